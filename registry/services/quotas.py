"""Per-namespace storage quotas: what a namespace uses, and the check a new blob must pass.

A namespace is a repository name's first segment. Its *usage* is the total size of the
distinct blobs linked (``repository_blobs``) to its repositories: a layer shared by two
of its repositories counts once, a layer shared with another namespace counts in both.
Manifests (kept in the database) and upload sessions in progress do not count.

The check runs when a blob is linked to a repository of the namespace: at upload commit
(``UploadService.commit``) and at cross-repository mount (``BlobService.mount``), inside
the write transaction that links it, holding the namespace's row lock, so concurrent
commits in a namespace with a quota are checked one after the other and cannot pass it
together. Namespaces without a quota take no lock. Nothing already stored is ever
removed by a quota; lowering it below the usage only refuses new blobs.
"""

from __future__ import annotations

from pydantic import ByteSize, TypeAdapter, ValidationError
from sqlalchemy import Connection, exists, func, select

from registry.db.tables import blobs, namespaces, repositories, repository_blobs
from registry.errors import QuotaExceeded
from registry.services.common import in_namespaces

MAX_QUOTA = 2**63 - 1  # a BIGINT
_SIZE = TypeAdapter(ByteSize)


def namespace_of(repository: str) -> str:
    return repository.split("/", 1)[0]


def human(n: int) -> str:
    """``10.0GiB``-style sizes for messages (binary units, as quotas are usually set)."""
    return ByteSize(n).human_readable(decimal=False)


def parse_size(text: str) -> int:
    """Bytes from ``10GiB``, ``500MB`` (SI: 500 000 000), ``1.5 GiB`` or a plain number.

    ValueError for anything else (negative numbers included).
    """
    try:
        value = int(_SIZE.validate_python(text.strip()))
    except ValidationError:
        raise ValueError(f"invalid size {text!r}: a number of bytes or e.g. 500MB, "
                         "10GiB") from None
    if not 0 <= value <= MAX_QUOTA:
        raise ValueError(f"invalid size {text!r}: at most {MAX_QUOTA} bytes")
    return value


def _repos(ns: str):
    # A subquery of ids: the join below then walks repository_blobs' primary key
    # (repository_id, digest) for each repository of the namespace.
    return select(repositories.c.id).where(in_namespaces(repositories.c.name, {ns}))


def usage(conn: Connection, ns: str) -> int:
    """Bytes used by namespace ``ns``: distinct blobs linked to its repositories."""
    linked = (select(repository_blobs.c.digest)
              .where(repository_blobs.c.repository_id.in_(_repos(ns))).distinct()
              .subquery())
    total = conn.execute(select(func.coalesce(func.sum(blobs.c.size), 0))
                         .select_from(linked.join(blobs, blobs.c.digest == linked.c.digest))
                         ).scalar_one()
    return int(total)


def quota(conn: Connection, ns: str, *, lock: bool = False) -> int | None:
    """The quota of ``ns`` in bytes; None: unlimited (also when it has no row). With
    ``lock``, the namespace's row stays locked until the transaction ends."""
    q = select(namespaces.c.quota_bytes).where(namespaces.c.name == ns)
    return conn.execute(q.with_for_update() if lock else q).scalar()


def check(conn: Connection, repository: str, digest: str, size: int, *,
          lock: bool = False) -> None:
    """Raise QuotaExceeded if linking blob ``digest`` (``size`` bytes) to ``repository``
    would take its namespace over its quota. A blob already linked anywhere in the
    namespace costs nothing. Call it with ``lock`` inside the write transaction that
    links the blob: a namespace with a quota then takes its commits one at a time (on
    PostgreSQL; SQLite has one writer anyway), so parallel layer uploads cannot each
    see the usage without the others and pass the quota together. Without ``lock`` it
    is an early, advisory check."""
    ns = namespace_of(repository)
    limit = quota(conn, ns, lock=lock)
    if limit is None:
        return
    linked = conn.execute(select(exists().where(
        repository_blobs.c.digest == digest,
        repository_blobs.c.repository_id.in_(_repos(ns))))).scalar()
    if linked:
        return
    used = usage(conn, ns)
    if used + size > limit:
        raise QuotaExceeded(
            f"namespace {ns!r} is over its storage quota: {human(used)} used + "
            f"{human(size)} for this blob > {human(limit)} quota",
            {"namespace": ns, "quota_bytes": limit, "usage_bytes": used,
             "blob_bytes": size, "digest": digest})
