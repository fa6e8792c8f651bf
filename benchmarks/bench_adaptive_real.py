"""Benchmark: adaptive resampling against a dense fixed grid on the embedded real model.

The synthetic model (bench_adaptive.py) scores against the exact truth; a real model has
none, so here a dense fixed grid (19 levels x 16 continuations) is the reference. On the
same base responses of the embedded SmolLM2 (config.yaml's engine and sampling), three
strategies run through the workflow's elicitation, grading and detection:

- `dense`: 0.05, 0.10, ..., 0.95, 16 continuations each (the reference);
- `paper`: the paper's grid (0.05, 0.1, 0.3, 0.5, 0.7, 0.9) at 16, taken from the dense run;
- `adaptive`: critical_windows.cot.adaptive with the config's `adaptive` block (schema defaults).

Per strategy: generated tokens and model calls per question (as bench_adaptive.py),
windows found, agreement of the window call with the reference, and, where both find a
window, the localization error against the reference's window in tokens. Wall-clock seconds
are this machine's. The journal under results/benchmarks/adaptive_real/ makes a killed run
resume. Writes results/benchmarks/adaptive_real.csv (strategies) and
adaptive_real_questions.csv (each question's window under each strategy).

    .venv/bin/python benchmarks/bench_adaptive_real.py [--questions 2] [--samples 16]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")

import polars as pl
import yaml

from critical_windows.analysis import windows
from critical_windows.cot import adaptive, generation
from critical_windows.data import benchmarks
from critical_windows.engine.journal import Journal
from critical_windows.engine.models import materialize_embedded
from critical_windows.engine.registry import load_backend
from critical_windows.engine.types import EngineSettings
from critical_windows.grading import grader

ROOT = Path(__file__).resolve().parents[1]
DATASETS = ["arc_easy", "mmlu"]
DENSE = [round(0.05 * i, 2) for i in range(1, 20)]
PAPER = [0.05, 0.1, 0.3, 0.5, 0.7, 0.9]


def detect(
    questions: pl.DataFrame,
    base: pl.DataFrame,
    truncated: pl.DataFrame,
    resampled: pl.DataFrame,
    elicited: pl.DataFrame,
    thresholds: dict[str, float],
) -> tuple[pl.DataFrame, dict[str, float]]:
    """Windows of one strategy, and its cost per question."""
    graded, _ = grader.grade(questions, elicited, processes=1)
    _, found = windows.detect(graded, truncated, base, **thresholds)
    n = base.height
    cost = {
        "tokens_per_question": (base["n_response_tokens"].sum() + resampled["n_tokens"].sum()) / n,
        # base, continuations, and the elicitations of orig, the stumps and the continuations
        "calls_per_question": (n + resampled.height + n + truncated.height + resampled.height) / n,
        "levels_per_question": truncated.height / n,
    }
    return found, cost


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=ROOT / "config.yaml")
    parser.add_argument("--questions", type=int, default=2, help="per dataset")
    parser.add_argument("--samples", type=int, default=16, help="per level of the dense grid")
    parser.add_argument("--out", type=Path, default=ROOT / "results/benchmarks/adaptive_real.csv")
    args = parser.parse_args()
    cfg = yaml.safe_load(args.config.read_text())
    thresholds = cfg["windows"]
    work = args.out.parent / "adaptive_real"

    model = ROOT / "results/models/embedded"
    if not model.exists():
        materialize_embedded(model)
    engine = EngineSettings(**cfg.get("engine", {}))
    sampling = cfg["sampling"]
    settings = generation.StageSettings(
        model="smollm2",
        model_path=str(model),
        revision=None,
        backend=cfg.get("backend", "vllm"),
        engine=engine,
        temperature=sampling["temperature"],
        top_p=sampling["top_p"],
        max_tokens=sampling["max_tokens"],
        seed=cfg["seed"],
        samples_per_level=args.samples,
        elicitation_max_tokens=cfg["elicitation_max_tokens"],
        code="bench_adaptive_real",
        batch_size=cfg.get("batch_size", 64),
    )
    questions = benchmarks.prepare_bundled(
        DATASETS, resources=ROOT / "resources/datasets", n=args.questions, seed=cfg["seed"]
    )
    start = time.monotonic()
    backend = load_backend(settings.backend, str(model), engine)
    print(f"engine started in {time.monotonic() - start:.0f} s")

    def gen(name: str) -> generation.Generator:
        return generation.Generator(backend, Journal(work / name), settings)

    judge = gen("elicit")
    base = generation.generate_base(gen("base"), questions)
    results: dict[str, tuple[pl.DataFrame, dict[str, float]]] = {}

    t = time.monotonic()
    truncated = generation.truncate_responses(base, DENSE, backend.tokenizer)
    resampled = generation.resample_prefixes(gen("dense"), base, truncated)
    elicited = generation.elicit_answers(judge, questions, base, truncated, resampled)
    seconds = {"dense": time.monotonic() - t}
    results["dense"] = detect(questions, base, truncated, resampled, elicited, thresholds)
    paper = pl.col("level").is_in(PAPER)
    results["paper"] = detect(
        questions,
        base,
        truncated.filter(paper),
        resampled.filter(paper),
        elicited.filter(pl.col("level").is_null() | paper),  # orig and direct: no level
        thresholds,
    )
    seconds["paper"] = seconds["dense"] * len(PAPER) / len(DENSE)

    t = time.monotonic()
    knobs = adaptive.AdaptiveSettings.from_mapping(
        cfg.get("adaptive"), jump=thresholds["jump"], drop=thresholds["drop"]
    )
    resampled = adaptive.resample_adaptive(gen("adaptive"), questions, base, knobs, judge=judge)
    truncated = adaptive.truncate_at_sampled_levels(base, resampled, backend.tokenizer)
    elicited = generation.elicit_answers(judge, questions, base, truncated, resampled)
    seconds["adaptive"] = time.monotonic() - t
    results["adaptive"] = detect(questions, base, truncated, resampled, elicited, thresholds)

    span = ["has_window", "level_lo", "level_hi", "jump", "token_start", "token_end"]
    per_q = pl.concat(
        [
            found.select("question_id", *span).with_columns(strategy=pl.lit(name))
            for name, (found, _) in results.items()
        ]
    )
    ref = results["dense"][0].select(
        "question_id",
        ref_window=pl.col("has_window"),
        ref_start=pl.col("token_start"),
        ref_end=pl.col("token_end"),
    )
    per_q = per_q.join(ref, on="question_id").with_columns(
        error=(
            (pl.col("token_start") - pl.col("ref_start")).abs()
            + (pl.col("token_end") - pl.col("ref_end")).abs()
        )
        / 2
    )
    rows = []
    for name, (found, cost) in results.items():
        mine = per_q.filter(pl.col("strategy") == name)
        both = mine.filter(pl.col("has_window") & pl.col("ref_window"))
        rows.append(
            {
                "strategy": name,
                "questions": found.height,
                **cost,
                "seconds": seconds[name],
                "windows": int(mine["has_window"].fill_null(False).sum()),
                "reference_windows": int(mine["ref_window"].fill_null(False).sum()),
                "same_call_as_reference": float(
                    (mine["has_window"].fill_null(False) == mine["ref_window"].fill_null(False))
                    .cast(pl.Float64)
                    .mean()
                ),
                "error_tokens_vs_reference": both["error"].mean() if both.height else None,
            }
        )
    out = pl.DataFrame(rows)
    dense_tokens = out.filter(pl.col("strategy") == "dense")["tokens_per_question"][0]
    out = out.with_columns(token_ratio_vs_dense=dense_tokens / pl.col("tokens_per_question"))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    out.write_csv(args.out)
    per_q.sort("question_id", "strategy").write_csv(
        args.out.with_name(args.out.stem + "_questions.csv")
    )
    with pl.Config(tbl_rows=-1, tbl_cols=-1, tbl_width_chars=250, tbl_hide_dataframe_shape=True):
        print(out.with_columns(pl.col(pl.Float64).round(3)))
        print(per_q.sort("question_id", "strategy"))
    print(f"wrote {args.out} in {time.monotonic() - start:.0f} s")


if __name__ == "__main__":
    main()
