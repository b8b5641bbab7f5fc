"""``python -m verifier MODEL_PATH [options]``: verify one model and print its report.

Prints the one-line summary, or the whole report as JSON with ``--json``. Exit status: 0
when the model passed, 1 when it failed, 2 on a usage or infrastructure error.
"""

from __future__ import annotations

import argparse
import json
import sys

from verifier.run import BackendUnavailable, verify
from verifier.spec import GiB, Spec


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m verifier", description=__doc__.split("\n")[0])
    parser.add_argument("model_path")
    parser.add_argument("--backend", default="auto", choices=["auto", "llama.cpp", "mlx"])
    parser.add_argument("--prompt")
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--gpu-layers", type=int,
                        help="llama.cpp layers to offload to the GPU (-1: all, 0: none; "
                        "default: all on a GPU build, none on a CPU build)")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds")
    parser.add_argument("--memory-limit-gib", type=float, default=8.0)
    parser.add_argument("--min-tps", type=float, help="minimum generation tokens/s")
    parser.add_argument("--json", action="store_true", help="print the whole report as JSON")
    args = parser.parse_args(argv)
    options = {"prompt": args.prompt, "threads": args.threads, "gpu_layers": args.gpu_layers}
    try:
        spec = Spec(model_path=args.model_path, backend=args.backend, max_tokens=args.max_tokens,
                    timeout_s=args.timeout, memory_limit_bytes=int(args.memory_limit_gib * GiB),
                    min_generation_tps=args.min_tps,
                    **{k: v for k, v in options.items() if v is not None})
        report = verify(spec)
    except (ValueError, BackendUnavailable) as exc:
        print(f"verifier: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.summary())
    return 0 if report.passed else 1


if __name__ == "__main__":
    sys.exit(main())
