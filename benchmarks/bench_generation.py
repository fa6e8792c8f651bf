"""Benchmark of the resample stage on this machine (not a test: it asserts nothing).

Prints, and writes to results/benchmarks/generation.csv, all measured side by side in one
process on one engine (so ratios hold on a busy machine where absolute rates do not):
- generated tokens/s of the pipeline's resample stage (request building, streaming,
  journal writes) against a bare `LLM.generate` on the same prompts: the overhead ratio;
- CPU time / wall time of both (2.0 is both cores of a 2-core machine busy);
- the fast exact top-p (critical_windows.engine.nucleus) against vLLM's own full-sort top-p and
  against no top-p at all, with how many seeded requests gave identical tokens;
- prompt tokens actually computed with prefix caching against without, for the
  continuations and for forced-readout elicitations (fresh engine vs same engine);
- model calls and generated tokens per question for the configured protocol.

Usage: .venv/bin/python benchmarks/bench_generation.py [--questions 4] [--config config.yaml]
"""

from __future__ import annotations

import argparse
import csv
import tempfile
import time
from pathlib import Path

import torch
import yaml

from critical_windows.cot.generation import (
    Generator,
    StageSettings,
    derive_seed,
    generate_base,
    resample_prefixes,
    truncate_responses,
)
from critical_windows.data import benchmarks
from critical_windows.engine import nucleus
from critical_windows.engine.journal import Journal
from critical_windows.engine.models import materialize_embedded
from critical_windows.engine.types import EngineSettings, Sampling
from critical_windows.engine.vllm_backend import VLLMBackend

ROOT = Path(__file__).resolve().parents[1]


def sampler_alone(rows: int = 64, vocab: int = 49152, rounds: int = 3) -> dict[str, float]:
    """CPU ms per step of the top-p mask alone, vLLM's full sort against the new one,
    interleaved (so both see the same load), on synthetic logits with small nuclei (2-6
    tokens, as a confident model's) and wider ones (up to ~130)."""
    torch.manual_seed(0)
    p = torch.full((rows,), 0.9)
    figures = {}
    for name, scale in (("small_nuclei", 8.0 / 0.6), ("wide_nuclei", 3.0 / 0.6)):
        logits = torch.randn(rows, vocab) * scale
        best = {"sort": float("inf"), "new": float("inf")}
        for _ in range(rounds):
            for how, mask in (("sort", nucleus.full_sort_top_p), ("new", nucleus.top_p_mask)):
                x = logits.clone()
                cpu = time.process_time()
                mask(x, p)
                best[how] = min(best[how], time.process_time() - cpu)
        figures[f"mask_ms_vllm_sort_{name}"] = round(best["sort"] * 1000, 1)
        figures[f"mask_ms_new_{name}"] = round(best["new"] * 1000, 1)
        figures[f"mask_speedup_{name}"] = round(best["sort"] / best["new"], 2)
    return figures


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
    questions, _ = benchmarks.prepare(
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

        def bare(top_p: float | None = None) -> tuple[float, float, int, list, list]:
            """Wall s, CPU s, tokens, token ids and outputs of one bare LLM.generate."""
            use = params
            if top_p is not None:
                use = [p.clone() for p in params]
                for p in use:
                    p.top_p = top_p
            backend.llm.reset_prefix_cache()
            wall, cpu = time.monotonic(), time.process_time()
            outs = backend.llm.generate(
                [TokensPrompt(prompt_token_ids=p) for p in prompts], use, use_tqdm=False
            )
            wall, cpu = time.monotonic() - wall, time.process_time() - cpu
            ids = [[tuple(c.token_ids) for c in o.outputs] for o in outs]
            return wall, cpu, sum(len(t) for o in ids for t in o), ids, outs

        # Side by side on one engine: vLLM's own top-p (full sort), no top-p, the new one.
        with nucleus.vllm_top_p():
            sort_s, sort_cpu, sort_tokens, sort_ids, _ = bare()
            free_s, free_cpu, free_tokens, _, _ = bare(top_p=1.0)
        bare_s, bare_cpu, bare_tokens, bare_ids, outs = bare()
        same = sum(a == b for a, b in zip(sort_ids, bare_ids, strict=True))
        computed = sum(
            len(p) - (o.num_cached_tokens or 0) for p, o in zip(prompts, outs, strict=True)
        )
        without_cache = sum(len(p) * m for p in prompts)

        backend.llm.reset_prefix_cache()
        gen = Generator(backend, Journal(Path(tmp) / "resample"), settings)
        wall, cpu = time.monotonic(), time.process_time()
        resampled = resample_prefixes(gen, base, truncated)
        stage_s, stage_cpu = time.monotonic() - wall, time.process_time() - cpu
        stage_tokens = int(resampled["n_tokens"].sum())

        # Elicitation prefill (forced readout: prompt + prefix + continuation + cue): in a
        # fresh engine, as the elicit_answers job runs it, and right after the
        # continuations in the same engine, whose prefix cache then holds them.
        prompter = gen.prompter
        prefix_of = {(r["question_id"], r["level"]): r["prefix_token_ids"] for r in rows}
        elicit = [
            prompter.forced_prompt(
                prompt_of[r["question_id"]],
                prefix_of[(r["question_id"], r["level"])] + r["token_ids"],
                "multiple_choice",
            )
            for r in resampled.iter_rows(named=True)
        ]
        greedy = [Sampling(0.0, 1.0, 4)] * len(elicit)
        warm = list(backend.stream(elicit, greedy, settings.batch_size))
        backend.llm.reset_prefix_cache()
        cold = list(backend.stream(elicit, greedy, settings.batch_size))

    n_q = questions.height
    base_tokens = int(base["n_response_tokens"].sum() + base["n_direct_tokens"].sum())
    elicit_total = sum(f.prompt_tokens for f in cold)
    cold_computed = elicit_total - sum(f.cached_tokens for f in cold)
    warm_computed = elicit_total - sum(f.cached_tokens for f in warm)
    figures = {
        "questions": n_q,
        "levels": len(levels),
        "samples_per_level": m,
        "engine_threads": torch.get_num_threads(),
        "bare_tokens_per_s": round(bare_tokens / bare_s, 1),
        "stage_tokens_per_s": round(stage_tokens / stage_s, 1),
        "overhead_ratio": round((stage_tokens / stage_s) / (bare_tokens / bare_s), 3),
        "bare_cpu_per_wall": round(bare_cpu / bare_s, 2),
        "stage_cpu_per_wall": round(stage_cpu / stage_s, 2),
        "vllm_top_p_tokens_per_s": round(sort_tokens / sort_s, 1),
        "no_top_p_tokens_per_s": round(free_tokens / free_s, 1),
        "new_top_p_tokens_per_s": round(bare_tokens / bare_s, 1),
        "new_over_vllm_top_p": round((bare_tokens / bare_s) / (sort_tokens / sort_s), 2),
        "new_over_no_top_p": round((bare_tokens / bare_s) / (free_tokens / free_s), 2),
        "vllm_top_p_cpu_per_wall": round(sort_cpu / sort_s, 2),
        # Tokens per CPU second: less sensitive than tokens/s to other load on the machine.
        "new_over_vllm_top_p_per_cpu_s": round(
            (bare_tokens / bare_cpu) / (sort_tokens / sort_cpu), 2
        ),
        "new_over_no_top_p_per_cpu_s": round(
            (bare_tokens / bare_cpu) / (free_tokens / free_cpu), 2
        ),
        "seeded_requests_identical_new_vs_vllm": f"{same}/{len(prompts)}",
        "prompt_tokens_computed_with_cache": computed,
        "prompt_tokens_without_cache": without_cache,
        "prefix_cache_saving": round(1 - computed / without_cache, 3),
        "elicit_prompt_tokens_per_request": round(elicit_total / len(elicit), 1),
        "elicit_computed_per_request_fresh_engine": round(cold_computed / len(elicit), 1),
        "elicit_computed_per_request_same_engine": round(warm_computed / len(elicit), 1),
        "elicit_computed_cut_same_engine": round(1 - warm_computed / elicit_total, 3),
        "elicit_computed_cut_fresh_engine_sorted": round(1 - cold_computed / elicit_total, 3),
        # Per question: base + direct, one call per level (n=M samples), and the
        # elicitations of orig, every stump and every continuation.
        "model_calls_per_question": 2 + len(levels) + 1 + len(levels) * (1 + m),
        "generated_sequences_per_question": 2 + len(levels) * m + 1 + len(levels) * (1 + m),
        "generated_tokens_per_question_base": round(base_tokens / n_q, 1),
        "generated_tokens_per_question_resample": round(stage_tokens / n_q, 1),
        **sampler_alone(),
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
