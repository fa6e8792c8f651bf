"""Adaptive resampling: the stopping rule and bisection on hand-made curves, the driver on
the synthetic model against the fixed grid, resuming from the journal, and Snakemake runs
with sampling_strategy "adaptive" on the synthetic and the embedded real model."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import polars as pl
import pytest
from conftest import TINY_CONFIG, make_workdir, snakemake

from critical_windows.cot import adaptive, generation, segmentation
from critical_windows.cot.generation import Generator, cut_length
from critical_windows.data import benchmarks
from critical_windows.engine import synthetic
from critical_windows.engine.journal import Journal
from critical_windows.experiments.synthetic import scorecard, simulation
from critical_windows.io import tables

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

S = adaptive.AdaptiveSettings()


def test_stopping_rule_decides_clear_levels_early_and_caps_the_rest() -> None:
    assert adaptive.classify(2, 2, S) is None  # fewer than initial_samples
    assert adaptive.classify(3, 3, S) == "high"  # all consistent: committed
    assert adaptive.classify(0, 3, S) == "low"  # none consistent
    assert adaptive.classify(2, 3, S) is None  # P near 1 - jump: undecided
    assert adaptive.classify(3, 5, S) == "high"  # max_samples: by the point estimate
    assert adaptive.classify(2, 5, S) == "low"
    assert adaptive.level_decided(2, 5, S) and not adaptive.level_decided(2, 3, S)
    strict = adaptive.AdaptiveSettings(confidence=0.99)
    assert adaptive.classify(3, 3, strict) is None  # a stricter interval needs more


def test_bisection_levels_stop_by_the_ratio_test_between_the_ends() -> None:
    ends = (0.3, 1.0)  # the step being split: P 0.3 below, 1 above
    s = adaptive.AdaptiveSettings(max_samples=16)
    assert adaptive.classify(4, 4, s, ends) == "high"  # 4 consistent in a row
    assert adaptive.classify(2, 4, s, ends) == "low"  # two misses: not committed yet
    assert adaptive.classify(3, 4, s, ends) is None  # one miss: sample more
    assert adaptive.classify(1, 1, s, ends) is None
    # far fewer samples than the Wilson rule needs for the same call
    assert adaptive.classify(2, 4, s) is None


def test_bisection_splits_the_jump_down_to_the_minimum_gap() -> None:
    length = 100
    S = adaptive.AdaptiveSettings(min_gap_tokens=2)
    # P low at 5 and 25, high at 50 and 75: the jump lies in (25, 50)
    points = [(5, "low", 0.1), (25, "low", 0.25), (50, "high", 1.0), (75, "high", 1.0)]
    assert adaptive.next_bisection(points, length, S) == (37, (0.25, 1.0))
    # flat curves have nothing to split
    flat = [(5, "high", 1.0), (25, "high", 1.0), (50, "high", 1.0)]
    assert adaptive.next_bisection(flat, length, S) is None
    # a step no wider than min_gap_tokens is left alone
    assert adaptive.next_bisection([(40, "low", 0.2), (42, "high", 1.0)], length, S) is None
    # a low last level: the jump is in the step to the whole response (P = 1)
    assert adaptive.next_bisection([(50, "high", 1.0), (75, "low", 0.0)], length, S)[0] == 87
    # of two candidate steps, the larger rise goes first
    two = [(10, "low", 0.4), (30, "high", 0.8), (60, "low", 0.1), (80, "high", 1.0)]
    assert adaptive.next_bisection(two, length, S)[0] == 70
    # on an exact step curve, bisection converges on the jumping token
    t, cuts = 63, {5, 25, 50, 75}
    while True:
        pts = [(c, "high" if c > t else "low", 1.0 if c > t else 0.3) for c in cuts]
        found = adaptive.next_bisection(pts, length, S)
        if found is None:
            break
        cuts.add(found[0])
    lo = max(c for c in cuts if c <= t)
    hi = min(c for c in cuts if c > t)
    assert lo <= t < hi and hi - lo <= S.min_gap_tokens


def test_bisection_at_units_takes_the_unit_cut_nearest_the_middle() -> None:
    units = [6, 15, 23, 29, 35, 43]
    points = [(6, "low", 0.1), (35, "high", 1.0)]
    assert adaptive.next_bisection(points, 50, S, units) == (23, (0.1, 1.0))
    # no unit starts inside the step: the window is between two neighbouring unit cuts
    assert adaptive.next_bisection([(29, "low", 0.1), (35, "high", 1.0)], 50, S, units) is None
    # the step to the whole response splits at the last units
    assert adaptive.next_bisection([(29, "high", 0.9), (35, "low", 0.2)], 50, S, units)[0] == 43


def _level(cut: int, consistent: int, graded: int) -> adaptive.Level:
    return adaptive.Level(cut, cut / 100, "grid", None, consistent, graded, graded)


def test_confirmation_samples_the_steps_that_decide_the_rule() -> None:
    # a clear window: P 0 of 25 below, 25 of 25 above; nothing to confirm
    assert adaptive.rule_pending([_level(40, 0, 25), _level(50, 25, 25)], 100, S) == []
    # a borderline rise (P 0.4 below): one end of the step is sampled more; the upper end,
    # whose continuations are shorter, while its estimate is the less certain
    low, high = _level(40, 2, 5), _level(50, 3, 3)
    assert adaptive.rule_pending([low, high], 100, S) == [high]
    high = _level(50, 25, 25)
    assert adaptive.rule_pending([low, high], 100, S) == [low]
    # up to confirm_samples
    assert adaptive.rule_pending([_level(40, 10, 25), high], 100, S) == []
    # the step to the whole response (P = 1 exactly) counts; only its lower end is sampled
    assert adaptive.rule_pending([_level(90, 2, 5)], 100, S) == [_level(90, 2, 5)]
    # a fall that may exceed `drop` is confirmed; a small one is not
    rise = [_level(60, 1, 25), _level(70, 25, 25)]
    fall = [_level(20, 3, 5), _level(30, 1, 5)]  # estimated fall 0.4, interval straddles 0.3
    assert len(adaptive.rule_pending([*fall, *rise], 100, S)) == 1
    flat = [_level(20, 1, 5), _level(30, 1, 5)]
    assert adaptive.rule_pending([*flat, *rise], 100, S) == []
    # no window possible (rise at most 0.5 even at the ends of the intervals): falls are moot
    fall = [_level(20, 25, 25), _level(30, 15, 25)]  # estimated fall 0.4
    assert adaptive.rule_pending([*fall, _level(60, 25, 25)], 100, S) == []


def test_levels_for_cuts_round_trip() -> None:
    for length in (7, 44, 91, 100, 2048):
        for cut in range(1, length, max(1, length // 13)):
            f = adaptive.level_for_cut(cut, length)
            assert 0 < f < 1 and cut_length(f, length) == cut


@pytest.fixture(scope="module")
def questions() -> pl.DataFrame:
    return benchmarks.prepare_bundled(
        ("arc_easy", "mmlu"), resources=ROOT / "resources/datasets", n=20, seed=2243
    )


def test_adaptive_finds_planted_windows_with_fewer_tokens_than_fixed(
    questions, tmp_path: Path
) -> None:
    model = synthetic.load("synthetic")
    card, cost, resampled = simulation.run_adaptive(
        model, questions, S, 2243, tmp_path, jump=0.5, drop=0.3, fdr=0.05
    )
    got = scorecard.quality(card)
    levels = [0.05, 0.1, 0.3, 0.5, 0.7, 0.9]
    sim = simulation.simulate(model, questions, levels, 25, 2243)
    fixed_card, fixed_cost = simulation.evaluate(
        model, sim, levels, 25, jump=0.5, drop=0.3, fdr=0.05
    )
    fixed = scorecard.quality(fixed_card)
    assert got["true_windows"] >= 10
    assert got["recall"] >= 0.7 and got["precision"] >= 0.7
    assert got["error_tokens"] < fixed["error_tokens"]
    assert cost["tokens_per_question"] < fixed_cost["tokens_per_question"] / 2
    assert set(resampled["chosen_by"]) == {"grid", "bisection"}


def test_adaptive_at_sentence_cuts_samples_only_unit_cuts(questions, tmp_path: Path) -> None:
    model = synthetic.load("synthetic")
    cuts = {"unit": "sentence"}
    card, cost, resampled = simulation.run_adaptive(
        model, questions, S, 2243, tmp_path, jump=0.5, drop=0.3, fdr=0.05, cuts=cuts
    )
    got = scorecard.quality(card)
    assert got["true_windows"] >= 10
    assert got["recall"] >= 0.7 and got["precision"] >= 0.7
    assert set(resampled["chosen_by"]) == {"grid", "bisection"}
    # every sampled level is one of the unit cuts that `cuts` allows, with its unit index
    gen = Generator(model, Journal(tmp_path / "gen"), simulation.stage_settings(2243))
    base = generation.generate_base(gen, questions)
    units = segmentation.truncate_at_units(
        base, model.tokenizer, segmentation.CutSettings.from_mapping(cuts)
    )
    sampled = resampled.select("question_id", "level").unique()
    assert sampled.join(units, on=["question_id", "level"], how="anti").height == 0
    truncated = adaptive.truncate_at_sampled_levels(base, resampled, model.tokenizer, cuts)
    assert truncated.height == sampled.height
    assert truncated["unit_index"].null_count() == 0
    # adaptive sampling chose fewer cuts than the units offer
    assert cost["levels_per_question"] < units.height / base.height


def test_adaptive_resumes_from_the_journal(questions, tmp_path: Path) -> None:
    model = synthetic.load("synthetic")
    qs = questions.head(6)
    settings = simulation.stage_settings(2243)
    gen = Generator(model, Journal(tmp_path / "g"), settings)
    base = generation.generate_base(gen, qs)
    first = adaptive.resample_adaptive(gen, qs, base, S)

    class Counting:
        def __init__(self, inner):
            self.inner, self.calls = inner, 0
            self.name, self.tokenizer = inner.name, inner.tokenizer
            self.max_model_len = inner.max_model_len

        def generate(self, prompts_, params):
            self.calls += 1
            return self.inner.generate(prompts_, params)

    counting = Counting(model)
    again = adaptive.resample_adaptive(
        Generator(counting, Journal(tmp_path / "g"), settings), qs, base, S
    )
    assert counting.calls == 0
    assert again.equals(first)
    truncated = adaptive.truncate_at_sampled_levels(base, first, model.tokenizer)
    pairs = first.select("question_id", "level").unique()
    assert truncated.height == pairs.height
    tables.conform(truncated, tables.TRUNCATED, "truncated")
    tables.conform(first, tables.RESAMPLED, "resampled")


@pytest.mark.slow
def test_adaptive_strategy_runs_through_snakemake(tmp_path: Path) -> None:
    config = {
        "models": {"synthetic": {"path": "synthetic"}},
        "datasets": ["arc_easy", "mmlu"],
        "questions_per_dataset": 6,
        "engine": {"max_model_len": 16384},
        "sampling": {"temperature": 0.6, "top_p": 0.9, "max_tokens": 128},
        "sampling_strategy": "adaptive",
        "adaptive": {"max_samples": 8},
        "elicitation_max_tokens": 32,
        "batch_size": 512,
    }
    work = make_workdir(tmp_path, config)
    snakemake(work, "results/synthetic/scorecard.csv", "results/synthetic/summary.csv")
    for d in config["datasets"]:
        res = tables.read_table(work / f"results/synthetic/{d}/resampled.parquet", tables.RESAMPLED)
        cut = tables.read_table(work / f"results/synthetic/{d}/truncated.parquet", tables.TRUNCATED)
        assert set(res["chosen_by"]) <= {"grid", "bisection"} and "grid" in set(res["chosen_by"])
        assert (
            cut.select("question_id", "level")
            .sort("question_id", "level")
            .equals(res.select("question_id", "level").unique().sort("question_id", "level"))
        )
        curves = tables.read_table(work / f"results/synthetic/{d}/curves.parquet", tables.CURVES)
        assert curves["n_missing"].sum() == 0
    card = pl.read_csv(work / "results/synthetic/scorecard.csv")
    pooled = card.filter(pl.col("population") == "all")
    assert set(pooled["truth"]) == {"planted", "grid", "span"}
    assert set(pooled["method"]) == {"rule", "rule_significant", "significant"}
    assert pooled.height == 9 and (pooled["questions"] == 12).all()
    assert (work / "results/synthetic/.journal/elicit_answers").is_dir()


@pytest.mark.slow
def test_adaptive_strategy_runs_on_the_real_model(tmp_path: Path, embedded_model: Path) -> None:
    """The default (real-model) path: vLLM continuations, in-stage elicitation of MATH
    and multiple-choice answers, then the unchanged later stages."""
    config = {
        **TINY_CONFIG,
        "sampling_strategy": "adaptive",
        "adaptive": {"confirm_samples": 5, "max_levels": 6},
    }
    work = make_workdir(tmp_path, config, embedded_model)
    snakemake(work, "results/smollm2/summary.csv", "results/smollm2/figures/question_curves.png")
    for d in config["datasets"]:
        res = tables.read_table(work / f"results/smollm2/{d}/resampled.parquet", tables.RESAMPLED)
        cut = tables.read_table(work / f"results/smollm2/{d}/truncated.parquet", tables.TRUNCATED)
        per_level = res.group_by("question_id", "level").len()
        assert per_level["len"].max() <= 5 and set(res["chosen_by"]) >= {"grid"}
        assert cut.height == per_level.height
        found = tables.read_table(work / f"results/smollm2/{d}/windows.parquet", tables.WINDOWS)
        assert found.height == config["questions_per_dataset"]
    # the in-stage elicitations are those of elicit_answers: its journal is shared
    log = (work / "results/logs/smollm2/elicit_answers/000.log").read_text()
    found = re.search(r"elicit_answers: (\d+) requests, (\d+) already journaled", log)
    assert found and int(found[2]) > 0, log[-2000:]
