"""Generation tokens/s reported by the verifier vs llama-cpp-python run directly.

    .venv/bin/python -m bench.verifier_vs_llama_cpp [--repeats 7] [--max-tokens 128]

Same model (the real Gemma 3 270M Q4_K_M GGUF), same prompt, same thread count, same
``n_ctx``, greedy decoding, same number of tokens:

- verifier: ``verifier.verify(Spec(...))``, a fresh child process per repetition (load,
  prompt, generation), its ``generation_tps`` figure;
- direct: one ``llama_cpp.Llama`` loaded in this process, ``Llama.generate(tokens,
  temp=0)`` timed around the yields: (tokens - 1) / (last token - first token), the same
  definition the verifier uses. llama.cpp's own decode counter (``llama_perf_context``:
  ``n_eval / t_eval_ms``) for the direct run is printed next to it as a cross-check of the
  wall-clock figure.

One untimed warm-up of each side first; then the sides alternate who goes first in each
repetition. The ratio (verifier / direct) is given as the ratio of the medians and as the
median of the per-repetition ratios; the target (0.9-1.1) counts as met only when both are
inside it. The greedy outputs of both sides must be identical, or the run fails. Results
go to ``bench/results/verifier_vs_llama_cpp-<date>.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import time
from pathlib import Path

from bench.common import BenchError, machine_facts, median, run, write_results
from tests.support.models import gemma_gguf_path
from verifier import DEFAULT_PROMPT, Spec, verify

TARGET = (0.9, 1.1)
NOTES = [
    "The verifier side includes everything the verifier does per token (reading the last "
    "row of logits, checking it is finite, argmax); the direct side uses llama-cpp-python's "
    "own greedy sampler through Llama.generate.",
    "The direct model stays loaded in the benchmark process between repetitions; the "
    "verifier loads it in a new child each time. Only decode time is compared.",
    "Both sides share the machine with whatever else runs on it: the load average before "
    "and after is recorded, and the paired ratio cancels slow drift.",
]


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return ""


class Direct:
    """llama-cpp-python used the way a script would use it, loaded once."""

    def __init__(self, model: Path, n_ctx: int, threads: int, seed: int):
        import llama_cpp

        self.llama_cpp = llama_cpp
        self.llm = llama_cpp.Llama(model_path=str(model), n_ctx=n_ctx, n_threads=threads,
                                   n_threads_batch=threads, seed=seed, verbose=False)
        self.vocab = llama_cpp.llama_model_get_vocab(self.llm.model)

    def run(self, prompt: str, max_tokens: int) -> dict:
        llm, lib = self.llm, self.llama_cpp
        llm.reset()  # n_tokens = 0: no prompt reuse, the KV cache is overwritten from 0
        lib.llama_perf_context_reset(llm.ctx)
        tokens = llm.tokenize(prompt.encode("utf-8"), add_bos=True, special=False)
        out: list[int] = []
        first = last = 0.0
        for token in llm.generate(tokens, temp=0.0, top_k=1, top_p=1.0, min_p=0.0,
                                  repeat_penalty=1.0):
            now = time.perf_counter()
            if lib.llama_vocab_is_eog(self.vocab, token):
                break
            out.append(token)
            first = first or now
            last = now
            if len(out) >= max_tokens:
                break
        perf = lib.llama_perf_context(llm.ctx)
        text = llm.detokenize(out).decode("utf-8", errors="replace")
        return {
            "generation_tps": (len(out) - 1) / (last - first),
            "llama_cpp_eval_tps": perf.n_eval / perf.t_eval_ms * 1000 if perf.t_eval_ms else None,
            "tokens": len(out),
            "output_sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(),
        }


def run_verifier(spec: Spec) -> dict:
    report = verify(spec)
    if not report.passed:
        raise BenchError(f"the verifier failed Gemma: {report.reason}\n{report.log_tail}")
    return {
        "generation_tps": report.generation_tps,
        "tokens": report.tokens_generated,
        "output_sha256": report.output_sha256,
        "load_s": report.load_s,
        "wall_s": report.wall_s,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--n-ctx", type=int, default=512)
    args = ap.parse_args(argv)

    facts = machine_facts()
    facts["load_average_before"] = load_average()
    print("# verifier vs llama-cpp-python, generation tokens/s\n")
    for k, v in facts.items():
        print(f"- {k}: {v}")
    model = gemma_gguf_path()
    spec = Spec(model_path=model, prompt=DEFAULT_PROMPT, max_tokens=args.max_tokens,
                n_ctx=args.n_ctx, threads=args.threads, timeout_s=600)
    print(f"- model: {model.name}; prompt {spec.prompt!r}; {args.max_tokens} tokens; "
          f"{args.threads} threads; n_ctx {args.n_ctx}\n")

    direct = Direct(model, args.n_ctx, args.threads, spec.seed)
    run_verifier(spec)  # warm-up: page cache, first-run costs
    direct.run(spec.prompt, args.max_tokens)

    samples: dict[str, list[dict]] = {"verifier": [], "direct": []}
    sides = {"verifier": lambda: run_verifier(spec),
             "direct": lambda: direct.run(spec.prompt, args.max_tokens)}
    for i in range(args.repeats):
        for name in ("verifier", "direct") if i % 2 == 0 else ("direct", "verifier"):
            sample = sides[name]()
            samples[name].append(sample)
            print(f"  #{i} {name:8s} {sample['generation_tps']:7.2f} tokens/s "
                  f"({sample['tokens']} tokens)")

    hashes = {s["output_sha256"] for side in samples.values() for s in side}
    counts = {s["tokens"] for side in samples.values() for s in side}
    if len(hashes) != 1 or len(counts) != 1:
        raise BenchError(f"the two sides did not generate the same text: {hashes} {counts}")

    v = [s["generation_tps"] for s in samples["verifier"]]
    d = [s["generation_tps"] for s in samples["direct"]]
    ratio = median(v) / median(d)
    paired = median([a / b for a, b in zip(v, d, strict=True)])
    own = [s["llama_cpp_eval_tps"] for s in samples["direct"] if s["llama_cpp_eval_tps"]]
    met = all(TARGET[0] <= r <= TARGET[1] for r in (ratio, paired))
    facts["load_average_after"] = load_average()
    results = {
        "machine": facts, "notes": NOTES,
        "settings": {"model": model.name, "prompt": spec.prompt, "max_tokens": args.max_tokens,
                     "threads": args.threads, "n_ctx": args.n_ctx, "repeats": args.repeats},
        "samples": samples,
        "figures": {"verifier_tps": median(v), "direct_tps": median(d),
                    "direct_llama_cpp_counter_tps": median(own) if own else None,
                    "ratio": ratio, "paired_ratio": paired,
                    "paired_min": min(a / b for a, b in zip(v, d, strict=True)),
                    "paired_max": max(a / b for a, b in zip(v, d, strict=True)),
                    "target": list(TARGET), "met": met},
    }
    print(f"\n- load average after: {facts['load_average_after']}")
    print("\n| figure | verifier | direct | ratio | paired ratio | target |")
    print("|---|---:|---:|---:|---:|---|")
    print(f"| Gemma 3 270M Q4_K_M generation, {args.threads} threads, {args.max_tokens} "
          f"tokens | {median(v):.1f} tokens/s | {median(d):.1f} tokens/s | {ratio:.3f} | "
          f"{paired:.3f} | 0.9-1.1 {'met' if met else '**MISSED**'} |")
    if own:
        print(f"\nllama.cpp's own decode counter for the direct runs: {median(own):.1f} tokens/s "
              f"(median); identical greedy output on both sides: yes")
    write_results("verifier_vs_llama_cpp", results)
    return 0


if __name__ == "__main__":
    run(main)
