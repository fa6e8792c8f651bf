"""Benchmark of the resample stage on this machine (not a test: it asserts nothing).

Prints, and writes to results/benchmarks/generation.csv:
- generated tokens/s of the pipeline's resample stage (request building, journal writes)
  against a bare `LLM.generate` on the same prompts in the same process: the overhead
  ratio (target >= 0.9);
- prompt tokens actually computed with prefix caching against without;
- model calls and generated tokens per question for the configured protocol.

Usage: .venv/bin/python benchmarks/bench_generation.py [--questions 4] [--config config.yaml]
"""

from __future__ import annotations

import argparse
import csv
import tempfile
import time
from pathlib import Path

import yaml

from critical_windows import datasets
from critical_windows.backends import EngineSettings, VLLMBackend
from critical_windows.generation import (
    Generator,
    StageSettings,
    derive_seed,
    generate_base,
    resample_prefixes,
    truncate_responses,
)
from critical_windows.journal import Journal
from critical_windows.models import materialize_embedded

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "config.yaml"))
    parser.add_argument("--questions", type=int, default=4, help="questions (from ARC-Easy)")
    args = parser.parse_args()
    cfg = yaml.safe_load(Path(args.config).read_text())

    model = ROOT / "results/models/embedded"
    if not model.exists():
        materialize_embedded(model)
    engine = EngineSettings(**cfg.get("engine", {}))
    backend = VLLMBackend(str(model), engine)
    levels, m = cfg["levels"], cfg["samples_per_level"]
    sampling = cfg["sampling"]
    settings = StageSettings(
        model="smollm2",
        model_path=str(model),
        revision=None,
        backend="vllm",
        engine=engine,
        temperature=sampling["temperature"],
        top_p=sampling["top_p"],
        max_tokens=sampling["max_tokens"],
        seed=cfg["seed"],
        samples_per_level=m,
        elicitation_max_tokens=cfg["elicitation_max_tokens"],
        code="benchmark",
        batch_size=cfg.get("batch_size", 64),
    )
    questions, _ = datasets.prepare(
        "arc_easy",
        source="bundled",
        resources=ROOT / "resources/datasets",
        n=args.questions,
        seed=cfg["seed"],
        bad_rows="error",
    )
    with tempfile.TemporaryDirectory() as tmp:
        gen = Generator(backend, Journal(Path(tmp) / "base"), settings)
        base = generate_base(gen, questions)
        truncated = truncate_responses(base, levels, backend.tokenizer)

        # The bare engine on exactly the resample stage's prompts and settings.
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        prompt_of = dict(
            zip(base["question_id"].to_list(), base["prompt_token_ids"].to_list(), strict=True)
        )
        rows = truncated.to_dicts()
        prompts = [prompt_of[r["question_id"]] + r["prefix_token_ids"] for r in rows]
        params = [
            SamplingParams(
                n=m,
                temperature=settings.temperature,
                top_p=settings.top_p,
                max_tokens=min(settings.max_tokens, engine.max_model_len - len(p)),
                seed=derive_seed(settings.seed, r["question_id"], r["level"], "resample"),
                stop_token_ids=backend._stop,
            )
            for p, r in zip(prompts, rows, strict=True)
        ]
        backend.llm.reset_prefix_cache()
        start = time.monotonic()
        outs = backend.llm.generate(
            [TokensPrompt(prompt_token_ids=p) for p in prompts], params, use_tqdm=False
        )
        bare_s = time.monotonic() - start
        bare_tokens = sum(len(c.token_ids) for o in outs for c in o.outputs)
        computed = sum(
            len(p) - (o.num_cached_tokens or 0) for p, o in zip(prompts, outs, strict=True)
        )
        without_cache = sum(len(p) * m for p in prompts)

        backend.llm.reset_prefix_cache()
        gen = Generator(backend, Journal(Path(tmp) / "resample"), settings)
        start = time.monotonic()
        resampled = resample_prefixes(gen, base, truncated)
        stage_s = time.monotonic() - start
        stage_tokens = int(resampled["n_tokens"].sum())

    n_q = questions.height
    base_tokens = int(base["n_response_tokens"].sum() + base["n_direct_tokens"].sum())
    figures = {
        "questions": n_q,
        "levels": len(levels),
        "samples_per_level": m,
        "bare_tokens_per_s": round(bare_tokens / bare_s, 1),
        "stage_tokens_per_s": round(stage_tokens / stage_s, 1),
        "overhead_ratio": round((stage_tokens / stage_s) / (bare_tokens / bare_s), 3),
        "prompt_tokens_computed_with_cache": computed,
        "prompt_tokens_without_cache": without_cache,
        "prefix_cache_saving": round(1 - computed / without_cache, 3),
        # Per question: base + direct, one call per level (n=M samples), and the
        # elicitations of orig, every stump and every continuation.
        "model_calls_per_question": 2 + len(levels) + 1 + len(levels) * (1 + m),
        "generated_sequences_per_question": 2 + len(levels) * m + 1 + len(levels) * (1 + m),
        "generated_tokens_per_question_base": round(base_tokens / n_q, 1),
        "generated_tokens_per_question_resample": round(stage_tokens / n_q, 1),
    }
    for key, value in figures.items():
        print(f"{key:42s} {value}")
    out = ROOT / "results/benchmarks/generation.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(figures))
        writer.writeheader()
        writer.writerow(figures)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
