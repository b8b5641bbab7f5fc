"""The verdict on one child run: its events, exit and limits turned into a ``Report``.

``judge`` reads the child's events (``verifier.child``) in the order the child sends them
and checks, first failure wins: the run's own end (timeout, memory limit, load error,
crash), the smoke generation (non-finite logits, no tokens, speed), perplexity, the prompt
checks, then every configuration of the run matrix (non-finite logits, speed per sequence,
peak memory). A configuration or prompt the backend cannot serve is reported as
unsupported with its reason and is not a failure. A child that stopped early without
saying why (no error event) is a crash "while <stage>".
"""

from __future__ import annotations

import hashlib
import logging
import math
import signal

from verifier import quality
from verifier.report import Report
from verifier.spec import PromptSpec, RunSpec, Spec

log = logging.getLogger(__name__)
_DOING = {"generate": "generating", "perplexity": "measuring perplexity"}


class BackendUnavailable(RuntimeError):
    """The backend's package is missing or broken here; says nothing about the model."""


def describe_run(index: int, run: RunSpec) -> str:
    """``run 2 (context 4096, q8_0 KV, parallel 4)``: how reasons name a configuration."""
    return (f"run {index + 1} (context {run.context}, {run.kv_cache} KV, "
            f"parallel {run.parallel})")


def _mib(n: int) -> str:
    return f"{n / 2**20:,.0f} MiB"


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _last_error_line(log_text: str) -> str | None:
    """The backend's last assertion or error line (faulthandler's own lines excluded)."""
    for line in reversed(log_text.splitlines()):
        line = line.strip()
        if line.startswith("Fatal Python error"):
            continue
        if any(w in line for w in ("GGML_ASSERT", "GGML_ABORT", "error", "Error")):
            return line[:200]
    return None


class _Events:
    """The child's events by kind; prompts and runs by index."""

    def __init__(self, events: list[dict]) -> None:
        self.first: dict[str, dict] = {}
        self.prompts: dict[int, dict] = {}
        self.runs: dict[int, dict] = {}
        for event in events:
            kind = event.get("event", "")
            self.first.setdefault(kind, event)
            if kind in ("prompt", "run") and isinstance(event.get("index"), int):
                (self.prompts if kind == "prompt" else self.runs)[event["index"]] = event

    def get(self, kind: str) -> dict:
        return self.first.get(kind, {})

    def stage(self, spec: Spec) -> str:
        """What the child was doing when it stopped."""
        if "done" not in self.first:
            if "loaded" in self.first:
                return "generating"
            return "loading the model" if "ready" in self.first else "starting the backend"
        if spec.perplexity and "perplexity" not in self.first:
            return "measuring perplexity"
        if len(self.prompts) < len(spec.prompts):
            return f"checking prompt {len(self.prompts) + 1}"
        if len(self.runs) < len(spec.runs):
            return f"measuring {describe_run(len(self.runs), spec.runs[len(self.runs)])}"
        return "finishing"


def judge(spec: Spec, backend: str, run, base: dict, log_tail: str,
          load_failure_reason) -> Report:
    """The report on ``run`` (``verifier.run``'s child run: ``events``, ``log``,
    ``returncode``, ``killed_for``, ``peak_rss_bytes``). ``load_failure_reason`` is the
    backend's. Raises ``BackendUnavailable`` when the backend could not be imported."""
    events = _Events(run.events)
    error = events.first.get("error")
    stage = events.stage(spec)
    if error and error.get("stage") == "import" and not run.killed_for:
        raise BackendUnavailable(f"the {backend} backend cannot run here: {error.get('error')}")
    report = _report(spec, events, run, base, log_tail)

    def fail(code: str, reason: str) -> Report:
        report.passed, report.failure, report.reason = False, code, reason
        return report

    failure = _ended(spec, run, error, stage, load_failure_reason)
    failure = failure or _smoke(spec, report, events, stage)
    failure = failure or _prompts(spec, report)
    failure = failure or _runs(spec, report, events, stage)
    return fail(*failure) if failure else report


def _report(spec: Spec, events: _Events, run, base: dict, log_tail: str) -> Report:
    sandbox = events.get("sandbox")
    isolated = sandbox.get("network_isolated") is True
    detail = sandbox.get("detail") or "not isolated: the child stopped before it reported"
    if not isolated and spec.network_isolation:
        log.warning("verifying %s without network isolation: %s", spec.model_path, detail)
    report = Report(passed=True, **base, network_isolated=isolated, sandbox=str(detail)[:300],
                    backend_version=events.get("ready").get("backend_version"),
                    load_s=events.get("loaded").get("load_s"),
                    peak_rss_bytes=run.peak_rss_bytes or None, log_tail=log_tail,
                    profile=spec.profile)
    gen = events.get("done").get("generation")
    if gen:
        _fill_figures(report, gen)
    measured = events.get("perplexity").get("perplexity")
    if measured:
        _fill_perplexity(report, measured)
    if spec.perplexity or spec.prompts:
        report.quality = {
            "perplexity": report.perplexity, "perplexity_tokens": report.perplexity_tokens,
            "perplexity_s": report.perplexity_s,
            "text_sha256": report.perplexity_text_sha256,
            "prompts": [_prompt_json(p, events.prompts.get(i))
                        for i, p in enumerate(spec.prompts) if i in events.prompts]}
    report.runs = [_run_json(r, events.runs.get(i)) for i, r in enumerate(spec.runs)
                   if i in events.runs]
    return report


def _ended(spec: Spec, run, error: dict | None, stage: str,
           load_failure_reason) -> tuple[str, str] | None:
    """How the child ended, when that alone is the verdict."""
    limit = spec.memory_limit_bytes
    if run.killed_for == "timeout":
        return "timeout", f"timed out after {spec.timeout_s:g} s while {stage}"
    if run.killed_for == "memory":
        return "memory", (f"exceeded the memory limit while {stage}: resident set "
                          f"{_mib(run.peak_rss_bytes)} > limit {_mib(limit)}")
    if error and error.get("stage") == "load":
        return "load", f"did not load: {load_failure_reason(error.get('error', ''), run.log)}"
    if error:
        # a prompt or run names itself (which one) in the stage
        doing = stage if error.get("stage") in ("prompt", "run") else \
            _DOING.get(error.get("stage"), stage)
        return "crash", f"crashed while {doing}: {error.get('error')}"
    if run.returncode != 0:
        how = (f"killed by {_signal_name(-run.returncode)}" if run.returncode < 0
               else f"exited with status {run.returncode}")
        if run.returncode == -signal.SIGKILL:
            how += " (sent from outside, e.g. by the kernel's out-of-memory killer)"
        detail = _last_error_line(run.log)
        return "crash", f"crashed while {stage}: {how}" + (f": {detail}" if detail else "")
    if limit is not None and run.peak_rss_bytes > limit:
        return "memory", (f"exceeded the memory limit: peak resident set "
                          f"{_mib(run.peak_rss_bytes)} > limit {_mib(limit)}")
    return None


def _below(tps: float | None, minimum: float | None, what: str = "") -> tuple[str, str] | None:
    """The speed floor; ``what`` names the run (nothing for the smoke check)."""
    if minimum is None:
        return None
    what = f"{what}: " if what else ""
    if tps is None:
        return "throughput", (f"{what}generation tokens/s not measurable with one token; "
                              f"the minimum is {minimum:g} tokens/s")
    if tps < minimum:
        return "throughput", (f"{what}generation {tps:.1f} tokens/s is below the minimum "
                              f"{minimum:g} tokens/s")
    return None


def _smoke(spec: Spec, report: Report, events: _Events, stage: str) -> tuple[str, str] | None:
    """The smoke generation, then perplexity."""
    gen = events.get("done").get("generation")
    if not gen:
        return "crash", f"stopped before it generated: {stage}"
    if gen["non_finite_step"] is not None:
        step = gen["non_finite_step"]
        where = "for the prompt" if step == 0 else f"at generated token {step + 1}"
        return "non_finite", f"non-finite logits (NaN or infinity) {where}"
    if gen["tokens"] == 0:
        return "no_tokens", "generated no tokens: end of sequence came first"
    slow = _below(report.generation_tps, spec.min_generation_tps)
    if slow:
        return slow
    if not spec.perplexity:
        return None
    if not events.get("perplexity"):
        return "crash", f"stopped before measuring perplexity: {stage}"
    if report.perplexity is None:
        return "quality", ("perplexity is not finite: non-finite logits on the project's "
                           "English text")
    limit = spec.max_perplexity
    if limit is not None and report.perplexity > limit:
        return "quality", (f"perplexity {report.perplexity:.1f} is above the limit "
                           f"max_perplexity {limit:g} (over {report.perplexity_tokens} "
                           "tokens of the project's English text)")
    return None


def _prompts(spec: Spec, report: Report) -> tuple[str, str] | None:
    answered = (report.quality or {}).get("prompts", [])
    for index, checked in enumerate(answered):
        if checked["matched"] is False and spec.prompts_must_match:
            return "quality", (f"prompt {index + 1} {checked['prompt'][:60]!r} did not match "
                               f"/{checked['expect']}/: answered "
                               f"{checked['output'][:80]!r}")
    if len(answered) < len(spec.prompts):
        return "crash", f"stopped before checking prompt {len(answered) + 1}"
    return None


def _runs(spec: Spec, report: Report, events: _Events, stage: str) -> tuple[str, str] | None:
    for index, (config, measured) in enumerate(zip(spec.runs, report.runs, strict=False)):
        if measured["unsupported"]:
            continue
        what = describe_run(index, config)
        if events.runs[index]["result"].get("non_finite"):
            return "non_finite", f"non-finite logits (NaN or infinity) in {what}"
        slow = _below(measured["generation_tps"], spec.min_generation_tps, what)
        if slow:
            return slow
        peak, limit = measured["peak_rss_bytes"], spec.max_peak_memory_bytes
        if limit is not None and peak is not None and peak > limit:
            return "memory", (f"{what}: peak memory {_mib(peak)} is above the limit "
                              f"max_peak_memory {_mib(limit)}")
    if len(report.runs) < len(spec.runs):
        return "crash", f"stopped before {stage}"
    return None


def _prompt_json(check: PromptSpec, event: dict) -> dict:
    answer = event.get("result")
    return {"prompt": check.prompt, "chat": check.chat, "expect": check.expect,
            "output": answer["text"] if answer else None,
            "matched": check.matches(answer["text"]) if answer else None,
            "template": answer["template"] if answer else None,
            "unsupported": event.get("unsupported"), "seconds": event.get("seconds")}


def _run_json(config: RunSpec, event: dict) -> dict:
    """One row of the run matrix: the configuration and its figures (or why not)."""
    row = {"context": config.context, "kv_cache": config.kv_cache,
           "parallel": config.parallel, "prompt_tokens": config.prompt_tokens,
           "max_tokens": config.max_tokens, "unsupported": event.get("unsupported"),
           "prompt_tps": None, "generation_tps": None, "aggregate_generation_tps": None,
           "ttft_s": None, "peak_rss_bytes": None, "peak_gpu_bytes": None,
           "tokens_generated": None,
           "output_sha256": None, "seconds": None}
    figures = event.get("result")
    if not figures:
        return row
    span = figures["last_s"] - figures["first_s"]
    decoded = sum(max(n - 1, 0) for n in figures["tokens"])
    aggregate = decoded / span if span > 0 and decoded else None
    row.update(
        prompt_tps=(config.parallel * figures["prompt_tokens"] / figures["prompt_s"]
                    if figures["prompt_s"] > 0 else None),
        aggregate_generation_tps=aggregate,
        generation_tps=aggregate / config.parallel if aggregate else None,
        ttft_s=figures["first_s"], peak_rss_bytes=event.get("peak_rss_bytes"),
        peak_gpu_bytes=event.get("peak_gpu_bytes"),
        tokens_generated=sum(figures["tokens"]), output_sha256=figures["output_sha256"],
        seconds=figures["last_s"])
    return row


def _fill_figures(report: Report, gen: dict) -> None:
    report.prompt_tokens = gen["prompt_tokens"]
    if gen["prompt_s"] > 0:
        report.prompt_tps = gen["prompt_tokens"] / gen["prompt_s"]
    report.ttft_s = gen["first_s"]
    report.tokens_generated = gen["tokens"]
    span = (gen["last_s"] or 0) - (gen["first_s"] or 0)
    if gen["tokens"] >= 2 and span > 0:
        report.generation_tps = (gen["tokens"] - 1) / span
    report.output = gen["output"]
    report.output_sha256 = hashlib.sha256(gen["output"].encode("utf-8")).hexdigest()


def _fill_perplexity(report: Report, measured: dict) -> None:
    value = measured["value"]
    report.perplexity = value if math.isfinite(value) else None
    report.perplexity_tokens = measured["tokens"]
    report.perplexity_s = measured["seconds"]
    report.perplexity_text_sha256 = quality.text_sha256()
