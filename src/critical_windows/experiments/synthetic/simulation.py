"""Simulated runs of the synthetic model: every stage's table computed from the model's
exact process, without an engine, for fast scorecards (benchmarks/bench_synthetic_sweep.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from critical_windows.analysis import windows
from critical_windows.cot import adaptive, generation, prompts
from critical_windows.engine import synthetic
from critical_windows.engine.journal import Journal
from critical_windows.engine.synthetic import LETTERS, SyntheticModel, answer_of, posterior
from critical_windows.engine.types import EngineSettings, Sampling
from critical_windows.experiments.synthetic.scorecard import score, truth
from critical_windows.grading import grader


@dataclass(frozen=True)
class Simulation:
    """A run of the synthetic model's chain-of-thought stages on a set of levels, with
    elicitation and grading replaced by the model's own (exact) answer rule."""

    questions: pl.DataFrame
    base: pl.DataFrame  # question_id, response_token_ids, response_text, n_response_tokens
    truncated: pl.DataFrame  # a TRUNCATED frame
    answers: pl.DataFrame  # question_id, level, sample, answer, n_tokens of each continuation
    orig: dict[str, str]  # question -> the original's answer
    stump: dict[tuple[str, float], str]  # (question, level) -> the bare prefix's answer


def simulate(
    model: SyntheticModel,
    questions: pl.DataFrame,
    levels: Sequence[float],
    samples_per_level: int,
    seed: int,
) -> Simulation:
    """Base responses, their prefixes at `levels` and `samples_per_level` continuations of
    each, with the same prompts and per-request seeds as the workflow's stages."""
    from critical_windows.cot.generation import derive_seed, truncate_responses

    tok = model.tokenizer
    rows = questions.select("question_id", "problem", "task").to_dicts()
    prompt_of = {
        q["question_id"]: prompts.render(
            tok, prompts.cot_messages(q["problem"], q["task"]), prompts.PREFILL
        )
        for q in rows
    }
    outs = model.generate(
        [prompt_of[q["question_id"]] for q in rows],
        [Sampling(1.0, 1.0, 1 << 20, 1, derive_seed(seed, q["question_id"], "base")) for q in rows],
    )
    base = pl.DataFrame(
        {
            "question_id": [q["question_id"] for q in rows],
            "response_token_ids": [list(c.token_ids) for (c,) in outs],
            "response_text": [c.text for (c,) in outs],
            "n_response_tokens": [len(c.token_ids) for (c,) in outs],
        },
        schema_overrides={"response_token_ids": pl.List(pl.Int32), "n_response_tokens": pl.Int32},
    )
    truncated = truncate_responses(base, levels, tok)
    problem_of = dict(zip(questions["question_id"], questions["problem"], strict=True))
    orig = {
        b["question_id"]: LETTERS[
            answer_of(
                posterior(
                    model.plan(problem_of[b["question_id"]]),
                    model.events_in_ids(b["response_token_ids"]),
                )
            )
        ]
        for b in base.iter_rows(named=True)
    }
    cuts = truncated.select("question_id", "level", "prefix_token_ids").to_dicts()
    outs = model.generate(
        [prompt_of[t["question_id"]] + t["prefix_token_ids"] for t in cuts],
        [
            Sampling(
                1.0,
                1.0,
                1 << 20,
                samples_per_level,
                derive_seed(seed, t["question_id"], t["level"], "resample"),
            )
            for t in cuts
        ],
    )
    answers: dict[str, list[Any]] = {
        k: [] for k in ("question_id", "level", "sample", "answer", "n_tokens")
    }
    stump = {}
    for t, completions in zip(cuts, outs, strict=True):
        plan = model.plan(problem_of[t["question_id"]])
        before = model.events_in_ids(t["prefix_token_ids"])
        stump[(t["question_id"], t["level"])] = LETTERS[answer_of(posterior(plan, before))]
        for i, c in enumerate(completions):
            answers["question_id"].append(t["question_id"])
            answers["level"].append(t["level"])
            answers["sample"].append(i)
            answers["answer"].append(
                LETTERS[answer_of(posterior(plan, before + model.events_in_ids(c.token_ids)))]
            )
            answers["n_tokens"].append(len(c.token_ids))
    return Simulation(questions, base, truncated, pl.DataFrame(answers), orig, stump)


def graded_frame(sim: Simulation, levels: Sequence[float], samples_per_level: int) -> pl.DataFrame:
    """The columns of a GRADED frame that `windows.detect` reads, from the first
    `samples_per_level` continuations at each of `levels`."""
    gold = dict(zip(sim.questions["question_id"], sim.questions["gold"], strict=True))
    dataset = dict(zip(sim.questions["question_id"], sim.questions["dataset"], strict=True))
    df = sim.answers.filter(
        pl.col("level").is_in(list(levels)) & (pl.col("sample") < samples_per_level)
    )
    qid, lvl = pl.col("question_id"), pl.col("level")
    stump = pl.struct(qid, lvl).map_elements(
        lambda r: sim.stump[(r["question_id"], r["level"])], return_dtype=pl.String
    )
    return df.with_columns(
        dataset=qid.replace_strict(dataset),
        gold=qid.replace_strict(gold),
        orig_answer=qid.replace_strict(sim.orig),
        stump_answer=stump,
        direct_answer=pl.lit(None, pl.String),
        direct_is_right=pl.lit(None, pl.Boolean),
    ).with_columns(
        orig_is_right=pl.col("orig_answer") == pl.col("gold"),
        is_right=pl.col("answer") == pl.col("gold"),
        is_consistent=pl.col("answer") == pl.col("orig_answer"),
        is_stump=pl.col("answer") == pl.col("stump_answer"),
        stump_is_right=pl.col("stump_answer") == pl.col("gold"),
        stump_is_consistent=pl.col("stump_answer") == pl.col("orig_answer"),
    )


def evaluate(
    model: SyntheticModel,
    sim: Simulation,
    levels: Sequence[float],
    samples_per_level: int,
    *,
    jump: float,
    drop: float,
    fdr: float,
    rule: str = "steps",
    max_span: float | None = None,
) -> tuple[pl.DataFrame, dict[str, float]]:
    """Detect windows on a sub-grid and sub-sample of a simulation with the window `rule`
    (windows.call_windows) and score them.

    Returns the scorecard and the cost per question: generated tokens (the base response
    and the continuations) and elicitations (original, stumps and continuations)."""
    from critical_windows.analysis import windows

    span = windows.MAX_SPAN if max_span is None else max_span
    truncated = sim.truncated.filter(pl.col("level").is_in(list(levels)))
    _, found = windows.detect(
        graded_frame(sim, levels, samples_per_level),
        truncated,
        sim.base,
        jump=jump,
        drop=drop,
        fdr=fdr,
        rule=rule,
        max_span=span,
    )
    truth_ = truth(model, sim.questions, sim.base, truncated, jump=jump, drop=drop, max_span=span)
    n = sim.base.height
    used = sim.answers.filter(
        pl.col("level").is_in(list(levels)) & (pl.col("sample") < samples_per_level)
    )
    cost = {
        "tokens_per_question": (
            int(sim.base["n_response_tokens"].sum()) + int(used["n_tokens"].sum())
        )
        / n,
        "elicitations_per_question": 1 + len(levels) * (samples_per_level + 1),
    }
    return score(found, truncated, truth_), cost


def stage_settings(seed: int) -> generation.StageSettings:
    """Settings of the model stages on the synthetic model outside the workflow."""
    return generation.StageSettings(
        model="synthetic",
        model_path="synthetic",
        revision=None,
        backend="vllm",
        engine=EngineSettings(max_model_len=16384),
        temperature=0.6,
        top_p=0.9,
        max_tokens=128,
        seed=seed,
        samples_per_level=1,
        elicitation_max_tokens=32,
        code="bench",
        batch_size=4096,
    )


def run_adaptive(
    model: synthetic.SyntheticModel,
    questions: pl.DataFrame,
    s: adaptive.AdaptiveSettings,
    seed: int,
    folder: Path,
    *,
    jump: float,
    drop: float,
    fdr: float,
    cuts: Mapping[str, Any] | None = None,
) -> tuple[pl.DataFrame, dict[str, float], pl.DataFrame]:
    """The adaptive driver (at the unit cuts of `cuts`, the config's block, if it has a
    unit), then elicitation, grading and detection of the workflow."""
    gen = generation.Generator(model, Journal(folder / "gen"), stage_settings(seed))
    judge = generation.Generator(model, Journal(folder / "judge"), stage_settings(seed))
    base = generation.generate_base(gen, questions)
    resampled = adaptive.resample_adaptive(gen, questions, base, s, judge=judge, cuts=cuts)
    truncated = adaptive.truncate_at_sampled_levels(base, resampled, model.tokenizer, cuts)
    elicited = generation.elicit_answers(judge, questions, base, truncated, resampled)
    graded, _ = grader.grade(questions, elicited, processes=1)
    _, found = windows.detect(graded, truncated, base, jump=jump, drop=drop, fdr=fdr)
    exact = truth(model, questions, base, truncated, jump=jump, drop=drop)
    n = base.height
    cost = {
        "tokens_per_question": (
            int(base["n_response_tokens"].sum()) + int(resampled["n_tokens"].sum())
        )
        / n,
        "calls_per_question": (
            n + resampled.height + elicited.filter(pl.col("kind") != "direct").height
        )
        / n,
        "levels_per_question": truncated.height / n,
    }
    return score(found, truncated, exact), cost, resampled
