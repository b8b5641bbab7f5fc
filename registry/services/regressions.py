"""A verifier report read against other results of this registry, when it is recorded.

The verifier measures one model; what its figures mean next to other models is only known
here. ``RegressionService.judge`` amends a report (a copy) from its ``profile.document``
before it is stored and published:

- **Reference ratio.** ``quality.reference`` names another model of this registry
  (``repo:tag`` or ``repo@sha256:...``). Its newest passed verification with a perplexity
  measured on the same text (``quality.text_sha256``) gives ``quality.reference_digest``,
  ``reference_perplexity`` and ``perplexity_ratio`` (this perplexity / the reference's).
  A reference that is unknown, not verified yet or measured on another text leaves the ratio
  null with ``quality.reference_note`` saying why: that is not the model's fault. A ratio
  above ``limits.max_perplexity_ratio`` fails the verdict (failure ``quality``).
- **Regressions.** For each tag pointing at the model, the newest manifest the tag pointed
  at before it (``tag_history``) that is ready and whose newest passed verification ran
  under the same profile (its sha256); of those, the most recently pushed is the
  ``previous`` version. Runs are compared pairwise (same index and configuration, both
  supported): a generation tokens/s drop, a peak memory growth, and a perplexity ratio
  growth (perplexity, on the same text, when there is no ratio) beyond the profile's
  ``regressions`` thresholds is an item of ``report["regressions"]``
  (``{"previous": {"digest", "tag"}, "items": [...], "action"}``; null when there is no
  previous version to compare with). With ``action: fail`` and items, the verdict fails
  (failure ``regression``), so the readiness gate keeps serving the previous version.

A report without a profile (from a worker that predates profiles) is returned as it is.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass

from sqlalchemy import Connection, select

from client.results import describe_regression
from registry.db.tables import manifests, repositories, tag_history, tags, verifications
from registry.digests import check_name, check_tag, is_digest, parse_digest
from registry.errors import RegistryError
from registry.profiles import Regressions
from registry.services.common import Service

RUN_CONFIG = ("context", "kv_cache", "parallel", "prompt_tokens", "max_tokens")
# The profile's own defaults, for documents that leave a threshold out.
DEFAULT_THRESHOLDS = Regressions().model_dump(exclude={"action"})
# metric -> (its threshold in the profile's ``regressions``, True when a growth is worse)
METRICS = {
    "generation_tps": ("generation_tps", False),
    "peak_rss_bytes": ("memory", True),
    "perplexity_ratio": ("perplexity_ratio", True),
    "perplexity": ("perplexity_ratio", True),
}
# How far back a lookup reads: a tag's history or a model's results beyond this many
# rows are not worth comparing with.
MAX_LOOKBACK = 20


@dataclass(frozen=True)
class Judgement:
    """The amended report; ``regressed``: it has regression items (an event is due)."""

    report: dict
    regressed: bool


# ------------------------------------------------------------------- reading reports


def profile_of(report: dict) -> tuple[str | None, dict]:
    """``(sha256, document)`` of the profile a report was measured under."""
    profile = report.get("profile")
    if not isinstance(profile, dict):
        return None, {}
    document = profile.get("document")
    return profile.get("sha256"), document if isinstance(document, dict) else {}


def _quality(report: dict) -> dict:
    q = report.get("quality")
    return q if isinstance(q, dict) else {}


def perplexity_of(report: dict) -> float | None:
    value = _quality(report).get("perplexity")
    return value if value is not None else report.get("perplexity")


def text_of(report: dict) -> str | None:
    """The sha256 of the text the report's perplexity was measured on."""
    return _quality(report).get("text_sha256") or report.get("perplexity_text_sha256")


def thresholds(document: dict) -> tuple[dict[str, float], str]:
    """The profile's regression thresholds (defaults filled in) and its action."""
    given = document.get("regressions")
    given = given if isinstance(given, dict) else {}
    out = {k: float(given.get(k, v)) for k, v in DEFAULT_THRESHOLDS.items()}
    return out, "fail" if given.get("action") == "fail" else "warn"


def parse_reference(text: str) -> tuple[str, str]:
    """``(repository, tag or digest)`` of ``repo:tag`` / ``repo@digest`` (tag ``latest``
    when none is given). Raises ``RegistryError`` when it is neither."""
    if "@" in text:
        name, ref = text.split("@", 1)
        parse_digest(ref)
    else:
        name, _, ref = text.rpartition(":") if ":" in text.rsplit("/", 1)[-1] \
            else (text, ":", "latest")
        check_tag(ref)
    return check_name(name), ref


# --------------------------------------------------------------------------- pure rules


def apply_ratio(report: dict, reference: str, found: tuple[str, float] | None,
                note: str | None) -> None:
    """Fill ``report["quality"]``'s reference fields (in place): ``found`` is the
    reference's ``(digest, perplexity)``, or None with ``note`` saying why there is none.
    Fails a passed report whose ratio is above ``limits.max_perplexity_ratio``."""
    quality = report.setdefault("quality", {})
    mine = perplexity_of(report)
    digest, theirs = found if found else (None, None)
    if found and mine is None:
        note = "this model has no perplexity (not measured, or not finite)"
    ratio = round(mine / theirs, 6) if found and mine is not None and theirs > 0 else None
    if found and mine is not None and not theirs > 0:
        note = f"the reference's perplexity {theirs!r} cannot divide"
    quality.update(reference=reference, reference_digest=digest,
                   reference_perplexity=theirs, perplexity_ratio=ratio)
    if ratio is None:
        quality["reference_note"] = note
        return
    quality.pop("reference_note", None)
    limit = (profile_of(report)[1].get("limits") or {}).get("max_perplexity_ratio")
    if limit is not None and ratio > limit:
        fail(report, "quality", f"perplexity ratio {ratio:.3f} (perplexity {mine:.2f} vs "
                                f"{theirs:.2f} of {reference}) is above the limit "
                                f"max_perplexity_ratio {limit:g}")


def fail(report: dict, failure: str, reason: str) -> None:
    """Fail a passed report (in place); a failed one keeps its first reason."""
    if report.get("passed"):
        report.update(passed=False, failure=failure, reason=reason)


def _runs(report: dict) -> list:
    runs = report.get("runs")
    return runs if isinstance(runs, list) else []


def _item(metric: str, run: int | None, previous, current, limits: dict) -> dict | None:
    """A regression item when ``current`` is worse than ``previous`` beyond the metric's
    threshold, else None (also when either figure is missing)."""
    if not isinstance(previous, (int, float)) or not isinstance(current, (int, float)) \
            or previous <= 0:
        return None
    key, growth_is_worse = METRICS[metric]
    change = (current - previous) / previous
    worse = change if growth_is_worse else -change
    if worse <= limits[key]:
        return None
    return {"metric": metric, "run": run, "previous": previous, "current": current,
            "change": round(change, 4), "threshold": limits[key]}


def compare(previous: dict, current: dict, limits: dict[str, float]) -> list[dict]:
    """The regression items of report ``current`` against report ``previous``.

    Runs pair by index when both ran the same configuration (``RUN_CONFIG``) and neither
    was unsupported: ``generation_tps`` (per sequence) may not drop, ``peak_rss_bytes``
    may not grow, beyond ``limits["generation_tps"]`` / ``limits["memory"]``. Quality: the
    perplexity ratio (both have one), else the perplexity (both measured on the same text)
    may not grow beyond ``limits["perplexity_ratio"]``."""
    items = []
    for i, (old, new) in enumerate(zip(_runs(previous), _runs(current), strict=False)):
        if not isinstance(old, dict) or not isinstance(new, dict):
            continue
        if any(old.get(k) != new.get(k) for k in RUN_CONFIG) or old.get("unsupported") \
                or new.get("unsupported"):
            continue
        items += [_item(m, i, old.get(m), new.get(m), limits)
                  for m in ("generation_tps", "peak_rss_bytes")]
    old_ratio = _quality(previous).get("perplexity_ratio")
    new_ratio = _quality(current).get("perplexity_ratio")
    if old_ratio is not None and new_ratio is not None:
        items.append(_item("perplexity_ratio", None, old_ratio, new_ratio, limits))
    elif text_of(previous) is not None and text_of(previous) == text_of(current):
        items.append(_item("perplexity", None, perplexity_of(previous), perplexity_of(current),
                           limits))
    return [i for i in items if i is not None]


def regression_reason(regressions: dict) -> str:
    """One line: what regressed, against which version."""
    prev = regressions["previous"]
    items = regressions["items"]
    more = f"; and {len(items) - 1} more" if len(items) > 1 else ""
    return (f"regressed against {prev['tag']} ({prev['digest'][:19]}…): "
            f"{describe_regression(items[0])}{more}")


# ------------------------------------------------------------------------------ lookups


def _passed_reports(conn: Connection, manifest_id: int, n: int = MAX_LOOKBACK,
                    hw_class: str | None | bool = False) -> list[dict]:
    """The reports of a manifest's ``n`` newest passed verifications, newest first: of
    every hardware class (``hw_class`` False), or only of ``hw_class`` (None: those
    without a class)."""
    q = select(verifications.c.report).where(verifications.c.manifest_id == manifest_id,
                                             verifications.c.verdict == "passed")
    if hw_class is not False:
        q = q.where(verifications.c.hw_class.is_(None) if hw_class is None
                    else verifications.c.hw_class == hw_class)
    texts = conn.execute(q.order_by(verifications.c.id.desc()).limit(n)).scalars().all()
    reports = []
    for text in texts:
        try:
            report = json.loads(text) if text else None
        except ValueError:
            continue
        if isinstance(report, dict):
            reports.append(report)
    return reports


def _resolve(conn: Connection, name: str, ref: str):
    """The manifest (id, digest) a reference names: by digest, that one; by tag, the one a
    pull by tag gets (the newest ready version the tag pointed at), else the tag's own."""
    base = (select(manifests.c.id, manifests.c.digest)
            .join(repositories, repositories.c.id == manifests.c.repository_id)
            .where(repositories.c.name == name))
    if is_digest(ref):
        return conn.execute(base.where(manifests.c.digest == ref)).first()
    served = conn.execute(
        base.join(tag_history, (tag_history.c.manifest_id == manifests.c.id)
                  & (tag_history.c.repository_id == repositories.c.id))
        .where(tag_history.c.tag == ref, manifests.c.status == "ready")
        .order_by(tag_history.c.pushed_at.desc(), manifests.c.id.desc()).limit(1)).first()
    return served or conn.execute(base.join(tags, tags.c.manifest_id == manifests.c.id)
                                  .where(tags.c.name == ref)).first()


class RegressionService(Service):
    """Reads the other results a report is judged against (see the module's text)."""

    def judge(self, manifest_id: int, report: dict, hw_class: str | None = None) -> Judgement:
        """``report`` (not changed) amended with its reference ratio and regressions,
        its verdict failed where the profile's limits or ``regressions.action`` say so.
        Regressions compare within a hardware class: against the previous version's result
        on ``hw_class`` (None: its result without a class)."""
        sha, document = profile_of(report)
        if sha is None:
            return Judgement(report, False)
        report = copy.deepcopy(report)
        with self.db.read() as conn:
            reference = (document.get("quality") or {}).get("reference")
            if reference:
                found, note = self._reference(conn, reference, text_of(report))
                apply_ratio(report, reference, found, note)
            previous = self._previous(conn, manifest_id, sha, hw_class)
        if previous is None:
            report["regressions"] = None
            return Judgement(report, False)
        tag, digest, old = previous
        limits, action = thresholds(document)
        regressions = {"previous": {"digest": digest, "tag": tag},
                       "items": compare(old, report, limits), "action": action}
        report["regressions"] = regressions
        if regressions["items"] and action == "fail":
            fail(report, "regression", regression_reason(regressions))
        return Judgement(report, bool(regressions["items"]))

    def _reference(self, conn: Connection, reference: str,
                   text: str | None) -> tuple[tuple[str, float] | None, str | None]:
        """``((digest, perplexity), None)`` of the reference model, or ``(None, why)``."""
        try:
            name, ref = parse_reference(reference)
        except RegistryError:
            return None, f"{reference!r} is not a repo:tag or repo@digest reference"
        row = _resolve(conn, name, ref)
        if row is None:
            return None, f"the reference {reference} is not in this registry"
        reports = _passed_reports(conn, row.id)
        if not reports:
            return None, f"the reference {reference} ({row.digest}) has no passed " \
                         "verification yet"
        for old in reports:
            if text is not None and text_of(old) == text and perplexity_of(old) is not None:
                return (row.digest, perplexity_of(old)), None
        return None, f"the reference {reference} ({row.digest}) has no perplexity measured " \
                     f"on the same text ({text or 'unknown'})"

    def _previous(self, conn: Connection, manifest_id: int, sha: str,
                  hw_class: str | None) -> tuple[str, str, dict] | None:
        """``(tag, digest, report)`` of the version to compare with, or None."""
        mine = conn.execute(
            select(tag_history.c.repository_id, tag_history.c.tag, tag_history.c.pushed_at)
            .join(tags, (tags.c.repository_id == tag_history.c.repository_id)
                  & (tags.c.name == tag_history.c.tag)
                  & (tags.c.manifest_id == tag_history.c.manifest_id))
            .where(tag_history.c.manifest_id == manifest_id)).all()
        best = None
        for rid, tag, pushed_at in mine:
            rows = conn.execute(
                select(manifests.c.id, manifests.c.digest, tag_history.c.pushed_at)
                .join(tag_history, tag_history.c.manifest_id == manifests.c.id)
                .where(tag_history.c.repository_id == rid, tag_history.c.tag == tag,
                       tag_history.c.pushed_at < pushed_at, manifests.c.id != manifest_id,
                       manifests.c.status == "ready")
                .order_by(tag_history.c.pushed_at.desc(), manifests.c.id.desc())
                .limit(MAX_LOOKBACK)).all()
            for row in rows:
                if best is not None and (row.pushed_at, tag) <= best[0]:
                    break
                latest = _passed_reports(conn, row.id, 1, hw_class)
                if latest and profile_of(latest[0])[0] == sha:
                    best = ((row.pushed_at, tag), (tag, row.digest, latest[0]))
                    break
        return best[1] if best else None
