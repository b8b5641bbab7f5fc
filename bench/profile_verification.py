"""The built-in default profile on Gemma 3 270M: time, overhead, fit, batching, engines.

    .venv/bin/python -m bench.profile_verification [--repeats 2] [--mlx-repeats 1]

Runs the verifier (``verifier.verify``, the sandboxed child a worker runs) under the
built-in default profile, as a worker builds its ``Spec`` (``worker.spec.measurements``),
on the real Gemma 3 270M Q4_K_M GGUF with llama.cpp and on its MLX copy (derived from the
same GGUF, ``tests.support.derived_mlx``), ``--repeats`` times each, and reports:

- wall time of the whole verification (target: <= 60 s on 2 cores) and the overhead
  beyond the backends' own compute (wall minus load, smoke generation, perplexity, prompt
  answers and runs, each timed inside the child; target: <= 2 s);
- the fit estimate (``registry.formats.fit``) against the measured peak of every run
  (target: within 10%);
- aggregate generation tokens/s with 4 parallel sequences against 1 on llama.cpp (the
  default profile's third and first runs);
- reproducibility: the greedy output hashes and perplexity of the repeats;
- the side-by-side table ``assay bench`` prints, llama.cpp against MLX.

Results go to ``bench/results/profile_verification-<date>.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
from pathlib import Path

from bench.common import RESULTS_DIR, BenchError, machine_facts, run
from client.bench import render
from registry.formats import fit
from registry.profiles import DEFAULT_PROFILE
from tests.support.derived_mlx import derived_mlx_path
from tests.support.models import gemma_gguf_path
from verifier import Report, Spec, verify
from worker.spec import measurements

TARGET_WALL_S = 60.0
TARGET_OVERHEAD_S = 2.0
TARGET_FIT_ERROR = 0.10


def compute_s(report: Report) -> float:
    """The backends' own work, as timed inside the child."""
    quality = report.quality or {}
    return ((report.load_s or 0) + (report.ttft_s or 0)
            + ((report.tokens_generated or 1) - 1) / (report.generation_tps or float("inf"))
            + (report.perplexity_s or 0)
            + sum(p.get("seconds") or 0 for p in quality.get("prompts", []))
            + sum(r.get("seconds") or 0 for r in report.runs))


def measure(path: Path, backend: str) -> dict:
    spec = Spec(model_path=path, threads=os.cpu_count() or 1, **measurements(DEFAULT_PROFILE))
    report = verify(spec)
    if not report.passed:
        raise BenchError(f"{backend}: {report.reason}\n{report.log_tail}")
    shape = fit.shape_from_gguf(path) if backend == "llama.cpp" else fit.shape_from_mlx(path)
    table = fit.table(shape, backend=backend)
    checks = fit.check(table, shape, report.runs, backend)
    return {"backend": backend, "wall_s": report.wall_s, "compute_s": compute_s(report),
            "overhead_s": report.wall_s - compute_s(report), "perplexity": report.perplexity,
            "output_sha256": report.output_sha256,
            "run_hashes": [r["output_sha256"] for r in report.runs],
            "fit_checks": checks, "report": report.to_dict()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--repeats", type=int, default=2, help="llama.cpp verifications")
    parser.add_argument("--mlx-repeats", type=int, default=1,
                        help="MLX verifications (minutes each on a CPU without Apple's)")
    args = parser.parse_args(argv)
    models = {"llama.cpp": (gemma_gguf_path(), args.repeats),
              "mlx": (derived_mlx_path(), args.mlx_repeats)}
    results = {backend: [measure(path, backend) for _ in range(repeats)]
               for backend, (path, repeats) in models.items()}
    gguf = results["llama.cpp"][0]["report"]
    single, parallel = gguf["runs"][0], gguf["runs"][2]
    summary = {
        "machine": machine_facts(), "date": dt.date.today().isoformat(),
        "targets": {"wall_s": TARGET_WALL_S, "overhead_s": TARGET_OVERHEAD_S,
                    "fit_error": TARGET_FIT_ERROR},
        "parallel_4_vs_1": (parallel["aggregate_generation_tps"]
                            / single["aggregate_generation_tps"]),
        "reproducible": {b: len({(r["output_sha256"], tuple(r["run_hashes"]),
                                  round(r["perplexity"], 3)) for r in rs}) == 1
                         for b, rs in results.items()},
        "results": results,
    }
    for backend, rs in results.items():
        for r in rs:
            errors = [abs(c["error"]) for c in r["fit_checks"] if c["error"] is not None]
            worst = max(errors) if errors else None
            print(f"{backend}: wall {r['wall_s']:.1f} s, overhead {r['overhead_s']:.2f} s, "
                  f"perplexity {r['perplexity']:.4f}, worst fit error "
                  f"{'n/a' if worst is None else f'{worst:.1%}'}")
    print(f"parallel 4 vs 1 (aggregate generation tokens/s): "
          f"{summary['parallel_4_vs_1']:.2f}x; reproducible: {summary['reproducible']}")
    side = [{"reference": f"gemma3-270m ({b})", "digest": None, "status": "ready",
             "backend": b, "profile": rs[0]["report"]["profile"], "runs": rs[0]["report"]["runs"],
             "quality": rs[0]["report"]["quality"], "fit": None} for b, rs in results.items()]
    print(render(side, as_json=False))
    RESULTS_DIR.mkdir(exist_ok=True)
    out = RESULTS_DIR / f"profile_verification-{summary['date']}.json"
    out.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"written {out}")
    return 0


if __name__ == "__main__":
    run(main)
