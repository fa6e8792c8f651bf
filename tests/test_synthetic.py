"""The synthetic model: its tokenizer and answers, the exactness of its P(f), the scoring,
the detector on it at small and large M, and a real workflow run on it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
from conftest import make_workdir, snakemake

from critical_windows.analysis import windows
from critical_windows.cot import prompts
from critical_windows.cot.generation import truncate_responses
from critical_windows.data import benchmarks
from critical_windows.engine import synthetic
from critical_windows.engine.registry import load_backend, load_tokenizer
from critical_windows.engine.types import EngineSettings, Sampling
from critical_windows.experiments.synthetic import scorecard, simulation
from critical_windows.grading.extraction import extract_choice
from critical_windows.io import tables

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def questions() -> pl.DataFrame:
    """Real multiple-choice questions: ARC-Easy (3 to 5 choices) and MMLU (4)."""
    return benchmarks.prepare_bundled(
        ("arc_easy", "mmlu"), resources=ROOT / "resources/datasets", n=40, seed=2243
    )


@pytest.fixture(scope="module")
def model() -> synthetic.SyntheticModel:
    return synthetic.load("synthetic")


def _cot(model: synthetic.SyntheticModel, q: dict) -> list[int]:
    return prompts.render(
        model.tokenizer, prompts.cot_messages(q["problem"], q["task"]), prompts.PREFILL
    )


def test_model_paths_dispatch_to_the_synthetic_model() -> None:
    backend = load_backend("vllm", "synthetic:sharp", EngineSettings(max_model_len=9000))
    assert isinstance(backend, synthetic.SyntheticModel)
    assert backend.spec.name == "sharp" and backend.max_model_len == 9000
    assert isinstance(load_tokenizer("synthetic"), synthetic.SyntheticTokenizer)
    assert not synthetic.is_synthetic("results/models/embedded")
    with pytest.raises(ValueError, match="unknown preset 'nope'"):
        synthetic.load("synthetic:nope")


def test_tokenizer_round_trips_prompts_and_responses(model, questions) -> None:
    tok = model.tokenizer
    text = tok.apply_chat_template(
        [{"role": "user", "content": "Ünïcode — ∫x dx? (A) ⇒B is not a token here"}],
        tokenize=False,
        add_generation_prompt=True,
    )
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert tok.decode(ids, skip_special_tokens=False) == text
    assert tok.decode(ids).startswith("Ünïcode")
    (c,) = model.generate(
        [_cot(model, questions.row(0, named=True))], [Sampling(0.6, 0.9, 500, 1, 1)]
    )[0]
    assert tok.encode(c.text) == list(c.token_ids)  # one word, one token
    k = len(c.token_ids) // 2
    assert c.text.startswith(tok.decode(c.token_ids[:k]))


def test_the_real_grader_reads_the_elicited_answers(model, questions) -> None:
    for q in questions.head(10).to_dicts():
        (c,) = model.generate([_cot(model, q)], [Sampling(0.6, 0.9, 500, 1, 3)])[0]
        assert c.finish_reason == "stop"
        ask = prompts.render(
            model.tokenizer,
            prompts.elicit_messages(q["problem"], q["task"], q["answer_type"], c.text),
        )
        ((answer,),) = model.generate([ask], [Sampling(0.0, 1.0, 32)])
        picked = synthetic.LETTERS[model.events_in_text(c.text)[-1][1]]
        assert answer.text == f"The answer is ({picked})."
        assert extract_choice(answer.text, len(q["choices"])).answer == picked


def test_seeds_make_samples_reproducible(model, questions) -> None:
    ids = _cot(model, questions.row(1, named=True))
    a = model.generate([ids], [Sampling(0.6, 0.9, 500, 4, 11)])[0]
    b = model.generate([ids], [Sampling(0.6, 0.9, 500, 4, 11)])[0]
    c = model.generate([ids], [Sampling(0.6, 0.9, 500, 4, 12)])[0]
    assert a == b and a != c
    (short,) = model.generate([ids], [Sampling(0.6, 0.9, 5, 1, 11)])[0]
    assert len(short.token_ids) == 5 and short.finish_reason == "length"


@pytest.mark.parametrize("population", ["sharp", "staged", "gradual"])
def test_exact_curve_matches_the_sampled_share(model, questions, population) -> None:
    """P(k) from the model against the share of 3,000 continuations with the same answer."""
    q = next(q for q in questions.to_dicts() if model.plan(q["problem"]).population == population)
    plan = model.plan(q["problem"])
    ids = _cot(model, q)
    (c,) = model.generate([ids], [Sampling(0.6, 0.9, 500, 1, 5)])[0]
    exact = model.exact_curve(q["problem"], c.token_ids)
    assert exact[-1] == 1.0 and len(exact) == plan.length + 1
    own = synthetic.answer_of(synthetic.posterior(plan, model.events_in_ids(c.token_ids)))
    for k in sorted(set(plan.events) | {0, plan.length // 2}):
        outs = model.generate([ids + list(c.token_ids[:k])], [Sampling(0.6, 0.9, 500, 3000, k)])[0]
        answers = [
            synthetic.answer_of(
                synthetic.posterior(
                    plan, model.events_in_ids(list(c.token_ids[:k]) + list(o.token_ids))
                )
            )
            for o in outs
        ]
        share = np.mean(np.array(answers) == own)
        se = np.sqrt(exact[k] * (1 - exact[k]) / 3000)
        assert abs(share - exact[k]) <= 4 * se + 1e-9, (k, share, exact[k])


def test_populations_have_the_windows_they_promise(model, questions) -> None:
    levels = [0.05, 0.1, 0.3, 0.5, 0.7, 0.9]
    sim = simulation.simulate(model, questions, levels, 1, 2243)
    truth = scorecard.truth(model, questions, sim.base, sim.truncated, jump=0.5, drop=0.3)
    by = {p: truth.filter(pl.col("population") == p) for p in synthetic.POPULATIONS}
    assert all(by[p].height > 0 for p in synthetic.POPULATIONS)
    committed = by["committed"]
    assert committed["planted_token"].null_count() == committed.height
    assert not committed["grid_has_window"].any()
    assert all(p.to_list() == [1.0] * 7 for p in committed["exact_p"])
    sharp = by["sharp"].filter(pl.col("planted_token").is_not_null())
    assert sharp.height >= by["sharp"].height / 2
    for row in sharp.iter_rows(named=True):  # the planted token is the pick
        plan = model.plan(
            questions.filter(pl.col("question_id") == row["question_id"])["problem"][0]
        )
        assert plan.events[row["planted_token"]] == synthetic.PICK


def _scoring_case() -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """Three questions of 100 tokens: q1 has a window at token 42, q2 at token 80, q3 none;
    the detector finds q1 right, q2 in the wrong step and q3 falsely."""
    levels = [0.3, 0.5, 0.7, 0.9]
    truncated = pl.DataFrame(
        [
            {"question_id": q, "level": f, "cut_tokens": int(round(f * 100))}
            for q in ("q1", "q2", "q3")
            for f in levels
        ]
    )
    truth = pl.DataFrame(
        {
            "question_id": ["q1", "q2", "q3"],
            "population": ["sharp", "sharp", "committed"],
            "n_response_tokens": [100, 100, 100],
            "planted_token": [42, 80, None],
            "grid_has_window": [True, True, False],
            "grid_token_start": [30, 70, None],
            "grid_token_end": [50, 90, None],
            "grid_token": [42, 80, None],
            "span_token_start": [40, 79, None],
            "span_token_end": [44, 82, None],
            "span_token": [42, 80, None],
        }
    )
    windows = pl.DataFrame(
        {
            "question_id": ["q1", "q2", "q3"],
            "has_window": [True, True, True],
            "significant": [True, False, True],
            "level_lo": [0.3, 0.5, 0.9],
            "level_hi": [0.5, 0.7, 1.0],
        }
    )
    return windows, truncated, truth


def test_score_counts_hits_misses_and_location_errors() -> None:
    card = scorecard.score(*_scoring_case())
    span = card.filter(
        (pl.col("population") == "all") & (pl.col("truth") == "span") & (pl.col("method") == "rule")
    ).row(0, named=True)
    assert (span["true_windows"], span["detected"], span["true_positives"]) == (2, 3, 1)
    assert span["start_error_tokens"] == pytest.approx((10 + 29) / 2)
    row = card.filter(
        (pl.col("population") == "all")
        & (pl.col("truth") == "planted")
        & (pl.col("method") == "rule")
    ).row(0, named=True)
    assert (row["true_windows"], row["detected"], row["true_positives"]) == (2, 3, 1)
    assert row["precision"] == pytest.approx(1 / 3) and row["recall"] == pytest.approx(0.5)
    # q1: [30, 50) against [42, 43); q2: [50, 70) against [80, 81)
    assert row["start_error_tokens"] == pytest.approx((12 + 30) / 2)
    assert row["end_error_tokens"] == pytest.approx((7 + 11) / 2)
    assert row["start_error_frac"] == pytest.approx((0.12 + 0.30) / 2)
    sig = card.filter(
        (pl.col("population") == "all")
        & (pl.col("truth") == "grid")
        & (pl.col("method") == "rule_significant")
    ).row(0, named=True)
    assert (sig["detected"], sig["true_positives"], sig["start_error_tokens"]) == (2, 1, 0.0)
    committed = card.filter(pl.col("population") == "committed")
    assert committed["recall"].null_count() == committed.height
    assert (committed.filter(pl.col("method") == "rule")["precision"] == 0.0).all()


def test_detector_finds_the_planted_windows_at_large_m_and_not_at_small(model, questions) -> None:
    levels = [0.05, 0.1, 0.3, 0.5, 0.7, 0.9]
    sim = simulation.simulate(model, questions, levels, 100, 2243)

    def quality(m: int, method: str) -> dict:
        card, cost = simulation.evaluate(model, sim, levels, m, jump=0.5, drop=0.3, fdr=0.05)
        row = card.filter(
            (pl.col("population") == "all")
            & (pl.col("truth") == "planted")
            & (pl.col("method") == method)
        ).row(0, named=True)
        return {**row, **cost}

    large, small = quality(100, "rule"), quality(4, "rule")
    assert large["true_windows"] >= 20
    assert large["recall"] >= 0.85 and large["precision"] >= 0.85
    assert small["recall"] < large["recall"]
    assert small["tokens_per_question"] < large["tokens_per_question"] / 10
    assert quality(100, "rule_significant")["recall"] >= 0.85
    assert quality(4, "rule_significant")["detected"] == 0  # 4 samples cannot pass BH here
    flat = synthetic.SyntheticModel(synthetic.PRESETS["flat"])
    flat_sim = simulation.simulate(flat, questions.head(20), levels, 20, 2243)
    card, _ = simulation.evaluate(flat, flat_sim, levels, 20, jump=0.5, drop=0.3, fdr=0.05)
    assert card["detected"].sum() == 0 and card["true_windows"].sum() == 0


def test_truncation_of_synthetic_responses_counts_words(model, questions) -> None:
    sim = simulation.simulate(model, questions.head(3), [0.5], 1, 1)
    again = truncate_responses(sim.base, [0.5], model.tokenizer)
    for t in again.iter_rows(named=True):
        assert len(t["prefix_text"].split()) == t["cut_tokens"]


@pytest.mark.slow
def test_workflow_run_on_the_synthetic_model(tmp_path: Path) -> None:
    """Every stage on the synthetic model; P(f) from grading agrees with the exact P(f)."""
    config = {
        "models": {"synthetic": {"path": "synthetic"}},
        "datasets": ["arc_easy", "mmlu"],
        "questions_per_dataset": 8,
        "engine": {"max_model_len": 16384},
        "sampling": {"temperature": 0.6, "top_p": 0.9, "max_tokens": 128},
        "levels": [0.1, 0.5, 0.9],
        "samples_per_level": 40,
        "elicitation_max_tokens": 32,
        "batch_size": 512,
    }
    work = make_workdir(tmp_path, config)
    snakemake(work, "results/synthetic/scorecard.csv")
    truth = tables.read_table(work / "results/synthetic/truth.parquet", tables.SYNTHETIC_TRUTH)
    assert truth.height == 16
    curves = pl.concat(
        tables.read_table(work / f"results/synthetic/{d}/curves.parquet", tables.CURVES)
        for d in config["datasets"]
    )
    assert curves["n_missing"].sum() == 0  # the grader extracted every synthetic answer
    exact = truth.select("question_id", "levels", "exact_p").explode("levels", "exact_p")
    joined = curves.join(
        exact.rename({"levels": "level"}), on=["question_id", "level"], how="inner"
    )
    assert joined.height == 16 * 4
    sampled = joined.filter(pl.col("level") < 1)
    se = (sampled["exact_p"] * (1 - sampled["exact_p"]) / 40).sqrt()
    assert ((sampled["p_consistent"] - sampled["exact_p"]).abs() <= 4.5 * se + 1e-9).all()
    card = pl.read_csv(work / "results/synthetic/scorecard.csv")
    pooled = card.filter(pl.col("population") == "all")
    # every truth (planted, grid, span) scored by every method of a greedy-readout run
    assert pooled.height == 9 and set(pooled["questions"]) == {16}
    assert set(pooled["truth"]) == set(scorecard.TRUTHS)
    assert pooled.filter(pl.col("truth") == "planted")["true_windows"][0] == (
        truth["planted_token"].is_not_null().sum()
    )


def test_score_run_takes_the_span_truth_at_the_runs_max_span(model, questions) -> None:
    levels = [0.05, 0.1, 0.3, 0.5, 0.7, 0.9]
    sim = simulation.simulate(model, questions, levels, 4, 2243)
    graded = simulation.graded_frame(sim, levels, 4)
    _, found = windows.detect(
        graded, sim.truncated, sim.base, jump=0.5, drop=0.3, fdr=0.05, rule="span"
    )

    def truth(**kw) -> pl.DataFrame:
        t, _ = scorecard.score_run(
            "synthetic", questions, sim.base, sim.truncated, found, jump=0.5, drop=0.3, **kw
        )
        return t.with_columns(width=pl.col("span_token_end") - pl.col("span_token_start"))

    default, narrow = truth(), truth(max_span=0.05)
    wider = pl.col("width") > (0.05 * pl.col("n_response_tokens")).floor()
    assert narrow.filter(wider).height == 0 and default.filter(wider).height > 0
    assert narrow["span_token"].null_count() > default["span_token"].null_count()


def test_span_rule_on_a_dense_grid_is_as_good_as_the_research_rule_on_the_paper_grid(
    model, questions
) -> None:
    # the same continuations per question (600): 6 levels of 100, 19 levels of 32
    paper, dense = [0.05, 0.1, 0.3, 0.5, 0.7, 0.9], [round(0.05 * i, 2) for i in range(1, 20)]
    sim = simulation.simulate(model, questions, sorted({*paper, *dense}), 100, 2243)

    def quality(levels: list[float], m: int, rule: str) -> dict:
        card, _ = simulation.evaluate(
            model, sim, levels, m, jump=0.5, drop=0.3, fdr=0.05, rule=rule
        )
        return card.filter(
            (pl.col("population") == "all")
            & (pl.col("truth") == "span")
            & (pl.col("method") == "rule")
        ).row(0, named=True)

    research, span = quality(paper, 100, "steps"), quality(dense, 32, "span")
    assert span["true_windows"] >= 30
    assert span["precision"] >= research["precision"] - 0.05
    assert span["recall"] >= research["recall"] - 0.05
