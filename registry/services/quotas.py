"""Per-namespace storage quotas: what a namespace uses, and the check a new blob must pass.

A namespace is a repository name's first segment. Its *usage* is the total size of the
distinct blobs linked (``repository_blobs``) to its repositories: a layer shared by two
of its repositories counts once, a layer shared with another namespace counts in both.
Manifests (kept in the database) and upload sessions in progress do not count.

The check that counts runs when a blob is linked to a repository of the namespace: at
upload commit (``UploadService.commit``) and at cross-repository mount
(``BlobService.mount``), inside the write transaction that links it, holding the
namespace's row lock, so concurrent commits in a namespace with a quota are checked one
after the other and cannot pass it together. Namespaces without a quota take no lock.

Earlier, advisory checks refuse a doomed push before its bytes travel: a monolithic
upload by its declared length and digest before its body is read, a chunked upload as
soon as its bytes would pass the room left (``Room``; its digest is not known yet, so it
counts in full), and a whole push when the client declares its blobs first
(``check_push``, ``POST /api/v1/repositories/<name>/push-check``). Nothing already
stored is ever removed by a quota; lowering it below the usage only refuses new blobs.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import ByteSize, TypeAdapter, ValidationError
from sqlalchemy import Connection, func, select

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


@dataclass(frozen=True)
class Room:
    """A namespace's quota and its usage, read together."""

    namespace: str
    quota: int
    usage: int

    @property
    def left(self) -> int:
        """Bytes that may still be added (0 when at or over the quota)."""
        return max(self.quota - self.usage, 0)

    def refusal(self, size: int, what: str, **detail) -> QuotaExceeded:
        """QuotaExceeded for adding ``size`` bytes of ``what`` ("this blob", "this
        push"), naming the namespace, its usage and its quota."""
        return QuotaExceeded(
            f"namespace {self.namespace!r} is over its storage quota: {human(self.usage)} "
            f"used + {human(size)} for {what} > {human(self.quota)} quota",
            {"namespace": self.namespace, "quota_bytes": self.quota,
             "usage_bytes": self.usage, **detail})


def _linked(conn: Connection, ns: str, digests: list[str]) -> set[str]:
    """Which of ``digests`` are linked to some repository of ``ns`` already."""
    if not digests:
        return set()
    return set(conn.execute(select(repository_blobs.c.digest).where(
        repository_blobs.c.digest.in_(digests),
        repository_blobs.c.repository_id.in_(_repos(ns))).distinct()).scalars())


def room(conn: Connection, repository: str, digest: str | None = None, *,
         lock: bool = False) -> Room | None:
    """The room left in ``repository``'s namespace; None when it has no quota, or when
    blob ``digest`` is linked in the namespace already (it costs nothing). ``lock``: as
    in ``check``."""
    ns = namespace_of(repository)
    limit = quota(conn, ns, lock=lock)
    if limit is None or (digest is not None and _linked(conn, ns, [digest])):
        return None
    return Room(ns, limit, usage(conn, ns))


def check(conn: Connection, repository: str, digest: str, size: int, *,
          lock: bool = False) -> None:
    """Raise QuotaExceeded if linking blob ``digest`` (``size`` bytes) to ``repository``
    would take its namespace over its quota. A blob already linked anywhere in the
    namespace costs nothing. Call it with ``lock`` inside the write transaction that
    links the blob: a namespace with a quota then takes its commits one at a time (on
    PostgreSQL; SQLite has one writer anyway), so parallel layer uploads cannot each
    see the usage without the others and pass the quota together. Without ``lock`` it
    is an early, advisory check."""
    r = room(conn, repository, digest, lock=lock)
    if r is not None and size > r.left:
        raise r.refusal(size, "this blob", blob_bytes=size, digest=digest)


def check_push(conn: Connection, repository: str, blobs: dict[str, int]) -> dict:
    """Whether blobs (digest -> size) a client is about to push to ``repository`` fit
    its namespace's quota: only those not linked in the namespace yet count. Returns
    ``{"namespace", "quota_bytes", "usage_bytes", "push_bytes"}`` (quota and usage
    None when there is no quota); raises QuotaExceeded when they do not fit. Advisory,
    like ``check`` without ``lock``: every blob is still checked when it is linked."""
    ns = namespace_of(repository)
    linked = _linked(conn, ns, list(blobs))
    new = sum(size for digest, size in blobs.items() if digest not in linked)
    answer = {"namespace": ns, "quota_bytes": None, "usage_bytes": None, "push_bytes": new}
    r = room(conn, repository)
    if r is None:
        return answer
    if new > r.left:
        raise r.refusal(new, "this push", push_bytes=new)
    return {**answer, "quota_bytes": r.quota, "usage_bytes": r.usage}
