"""Consistency curves, the window rule and the statistical call, on hand-made curves.

`write_fake_run` also serves tests/test_figures.py and tests/test_explorer.py: it writes the
tables of a small run (questions, base, truncated, graded) the way the model stages do.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pytest

from critical_windows.analysis import statistics, summary, windows
from critical_windows.io import tables

LEVELS = [0.05, 0.1, 0.3, 0.5, 0.7, 0.9]
RESPONSE = (
    "Let's think step by step: The question asks which gas plants take in for "
    "photosynthesis. Plants absorb carbon dioxide through the stomata in their leaves. "
    "Oxygen is released as a product, not taken in. Nitrogen is taken up through the "
    "roots as nitrate, not as a gas for photosynthesis. So the answer is carbon dioxide, "
    "which is choice B."
)


def as_table(rows: list[dict], schema) -> pl.DataFrame:
    """Rows as a frame of a table's schema (so that all-null columns get their type)."""
    return pl.from_arrow(pa.Table.from_pylist(rows, schema=schema))


def _tokens(text: str) -> list[tuple[int, int]]:
    """Word-level stand-ins for model tokens: (start, end) character spans."""
    spans, start = [], 0
    for word in text.split(" "):
        spans.append((start, start + len(word) + 1))
        start += len(word) + 1
    spans[-1] = (spans[-1][0], len(text))
    return spans


def graded_rows(
    question_id: str,
    curve: dict[float, list[bool | None]],
    *,
    dataset: str = "arc_easy",
    gold: str = "B",
    orig: str | None = "B",
    direct: str | None = "C",
) -> list[dict]:
    """GRADED rows of one question: per level, one entry per continuation.

    True is a continuation consistent with the original answer, False one that answers
    something else, None one whose answer could not be extracted.
    """
    rows = []
    for level, samples in curve.items():
        stump = orig if samples.count(True) * 2 >= len(samples) else "D"
        for sample, consistent in enumerate(samples):
            if consistent is None:
                answer = None
            elif orig is None:
                answer = "A"
            else:
                answer = orig if consistent else ("D" if orig != "D" else "A")
            rows.append(
                {
                    "question_id": question_id,
                    "dataset": dataset,
                    "answer_type": "multiple_choice",
                    "level": level,
                    "sample": sample,
                    "gold": gold,
                    "orig_answer": orig,
                    "orig_missing_reason": None if orig else "no_answer_pattern",
                    "stump_answer": stump,
                    "stump_missing_reason": None if stump else "no_answer_pattern",
                    "resample_answer": answer,
                    "resample_missing_reason": None if answer else "no_answer_pattern",
                    "direct_answer": direct,
                    "direct_missing_reason": None if direct else "no_answer_pattern",
                    "orig_is_right": None if orig is None else orig == gold,
                    "direct_is_right": None if direct is None else direct == gold,
                    "is_right": None if answer is None else answer == gold,
                    "is_consistent": None if answer is None or orig is None else answer == orig,
                    "stump_is_right": None if stump is None else stump == gold,
                    "stump_is_consistent": None if stump is None or orig is None else stump == orig,
                    "is_stump": None if answer is None or stump is None else answer == stump,
                }
            )
    return rows


def shaped(p: list[float], m: int = 10) -> dict[float, list[bool | None]]:
    """A curve with P(f) = p[i] at LEVELS[i] from m samples each."""
    return {f: [s < round(v * m) for s in range(m)] for f, v in zip(LEVELS, p, strict=True)}


def frames(questions: dict[str, tuple[str, dict]], text: str = RESPONSE):
    """GRADED, TRUNCATED and BASE frames for {question_id: (dataset, curve)}."""
    graded, truncated, base = [], [], []
    spans = _tokens(text)
    n = len(spans)
    for qid, (dataset, curve) in questions.items():
        graded += graded_rows(qid, curve, dataset=dataset)
        base.append({"question_id": qid, "response_text": text, "n_response_tokens": n})
        for f in LEVELS:
            cut = math.floor(f * n)
            offset = spans[cut - 1][1] if cut else 0
            truncated.append(
                {"question_id": qid, "level": f, "n_response_tokens": n, "cut_tokens": cut}
                | {"char_offset": offset}
            )
    return (
        as_table(graded, tables.GRADED),
        as_table(truncated, tables.TRUNCATED),
        as_table(base, tables.BASE),
    )


def detect(questions, jump=0.5, drop=0.3, fdr=0.05):
    return windows.detect(*frames(questions), jump=jump, drop=drop, fdr=fdr)


def one(windows_df: pl.DataFrame, qid: str) -> dict:
    return windows_df.filter(pl.col("question_id") == qid).row(0, named=True)


# --- intervals and tests -------------------------------------------------------------------


def test_wilson_interval_matches_published_values():
    low, high = statistics.wilson_interval(np.array([0, 5, 10, 0]), np.array([10, 10, 10, 0]))
    np.testing.assert_allclose(low[:3], [0.0, 0.2365931, 0.7224672], atol=1e-6)
    np.testing.assert_allclose(high[:3], [0.2775328, 0.7634069, 1.0], atol=1e-6)
    assert np.isnan(low[3]) and np.isnan(high[3])


def test_fisher_greater_exact_tails():
    p = statistics.fisher_greater(
        k_hi=np.array([4, 3, 2, 0, 1]),
        n_hi=np.array([4, 4, 4, 4, 0]),
        k_lo=np.array([0, 1, 2, 4, 0]),
        n_lo=np.array([4, 4, 4, 4, 3]),
    )
    np.testing.assert_allclose(p[:4], [1 / 70, 17 / 70, 53 / 70, 1.0])
    assert np.isnan(p[4])


def test_fisher_greater_agrees_with_the_hypergeometric_sum_for_unequal_sizes():
    k_hi, n_hi, k_lo, n_lo = 18, 25, 6, 20
    total, succ = n_hi + n_lo, k_hi + k_lo
    want = sum(
        math.comb(succ, x) * math.comb(total - succ, n_hi - x) for x in range(k_hi, n_hi + 1)
    ) / math.comb(total, n_hi)
    got = statistics.fisher_greater(np.array([k_hi]), np.array([n_hi]), np.array([k_lo]), [n_lo])
    assert got[0] == pytest.approx(want, rel=1e-9)


def test_benjamini_hochberg_adjustment():
    q = statistics.bh_adjust(np.array([0.01, 0.04, 0.03, 0.2, np.nan]))
    np.testing.assert_allclose(q[:4], [0.04, 0.16 / 3, 0.16 / 3, 0.2])
    assert np.isnan(q[4])


# --- curves --------------------------------------------------------------------------------


def test_curve_counts_missing_answers_and_adds_the_original_at_one():
    curve = shaped([0, 0, 0.5, 1, 1, 1])
    curve[0.3] = [True, True, None, False, None, False, True, False, True, False]
    c = windows.curves(frames({"q": ("arc_easy", curve)})[0])
    at = {r["level"]: r for r in c.iter_rows(named=True)}
    assert list(at) == [*LEVELS, 1.0]
    assert (at[0.3]["n_graded"], at[0.3]["n_missing"], at[0.3]["n_consistent"]) == (8, 2, 4)
    assert at[0.3]["p_consistent"] == 0.5
    assert at[0.3]["ci_low"] == pytest.approx(0.2152, abs=1e-4)
    assert at[1.0]["p_consistent"] == at[1.0]["ci_low"] == at[1.0]["ci_high"] == 1.0
    assert at[1.0]["stump_answer"] == "B" and at[1.0]["stump_is_right"]
    assert at[0.05]["p_right"] == 0.0 and at[0.9]["p_right"] == 1.0
    assert at[0.05]["stump_answer"] == "D" and at[0.05]["p_stump"] == 1.0


def test_curves_refuse_a_graded_level_of_one():
    graded = as_table(graded_rows("q", {1.0: [True]}), tables.GRADED)
    with pytest.raises(ValueError, match="'q': graded level 1.0"):
        windows.curves(graded)


# --- the research rule ---------------------------------------------------------------------


def test_clean_jump_is_a_window_with_its_span_and_text():
    _, w = detect({"clean": ("arc_easy", shaped([0, 0, 0, 1, 1, 1]))})
    row = one(w, "clean")
    assert row["has_window"] and row["significant"]
    assert (row["level_lo"], row["level_hi"], row["jump"], row["max_drop"]) == (0.3, 0.5, 1, 0)
    n = len(_tokens(RESPONSE))
    assert (row["token_start"], row["token_end"]) == (math.floor(0.3 * n), math.floor(0.5 * n))
    assert row["window_text"] == RESPONSE[row["char_start"] : row["char_end"]]
    assert (
        row["window_text"]
        == "carbon dioxide through the stomata in their leaves. Oxygen is released as "
    )


def test_two_small_steps_are_not_a_window_unless_the_threshold_is_lowered():
    curve = shaped([0, 0, 0.4, 0.4, 0.8, 0.8])
    _, w = detect({"steps": ("arc_easy", curve)})
    row = one(w, "steps")
    assert row["has_window"] is False
    assert row["jump"] == pytest.approx(0.4)
    assert row["token_start"] is None and row["window_text"] is None
    _, w = detect({"steps": ("arc_easy", curve)}, jump=0.3)
    assert one(w, "steps")["has_window"]


def test_a_rise_of_exactly_the_threshold_is_not_a_window():
    _, w = detect({"edge": ("arc_easy", shaped([0.3, 0.3, 0.3, 0.8, 0.8, 0.8]))})
    row = one(w, "edge")
    assert row["jump"] == 0.5 and row["has_window"] is False


def test_jump_followed_by_a_drop_is_not_a_window():
    _, w = detect({"drop": ("arc_easy", shaped([0, 0.9, 0.5, 0.5, 1, 1]))})
    row = one(w, "drop")
    assert row["has_window"] is False
    assert row["jump"] == pytest.approx(0.9) and row["max_drop"] == pytest.approx(0.4)
    _, w = detect({"drop": ("arc_easy", shaped([0, 0.9, 0.5, 0.5, 1, 1]))}, drop=0.4)
    assert one(w, "drop")["has_window"]


def test_constant_curve_has_no_window_and_no_significant_step():
    _, w = detect({"flat": ("arc_easy", shaped([1, 1, 1, 1, 1, 1]))})
    row = one(w, "flat")
    assert row["has_window"] is False and row["significant"] is False
    assert row["jump"] == 0 and row["max_drop"] == 0 and row["p_value"] == 1.0


def test_missing_level_is_skipped_and_missing_original_leaves_no_curve():
    curve = shaped([0, 0, 0, 1, 1, 1])
    curve[0.3] = [None] * 10
    curve[0.5] = [None, None, *curve[0.5][2:]]
    c, w = detect({"gap": ("arc_easy", curve), "noorig": ("arc_easy", shaped([0, 1, 1, 1, 1, 1]))})
    row = one(w, "gap")
    assert row["has_window"] and (row["level_lo"], row["level_hi"]) == (0.1, 0.5)
    assert row["n_levels"] == 6
    gap = c.filter(pl.col("question_id") == "gap")
    assert gap.filter(pl.col("level") == 0.5)["n_graded"].item() == 8
    assert gap.filter(pl.col("level") == 0.3)["p_consistent"].item() is None

    c, w = windows.detect(*_with_missing_original(), jump=0.5, drop=0.3, fdr=0.05)
    row = one(w, "noorig")
    assert row["n_levels"] == 0 and row["has_window"] is None and row["level_lo"] is None
    assert c.filter(pl.col("question_id") == "noorig")["n_missing"].to_list() == [10] * 6 + [1]


def _with_missing_original():
    graded, truncated, base = frames({"noorig": ("math", shaped([0, 1, 1, 1, 1, 1]))})
    graded = as_table(graded_rows("noorig", shaped([0, 1, 1, 1, 1, 1]), orig=None), tables.GRADED)
    return graded, truncated, base


def test_window_into_the_full_response_ends_at_its_last_token_and_character():
    _, w = detect({"late": ("arc_easy", shaped([0, 0, 0, 0.1, 0.1, 0.2]))})
    row = one(w, "late")
    assert row["has_window"] and (row["level_lo"], row["level_hi"]) == (0.9, 1.0)
    assert row["token_end"] == len(_tokens(RESPONSE)) and row["char_end"] == len(RESPONSE)
    assert row["window_text"].endswith("which is choice B.")


def test_small_samples_make_the_same_jump_less_certain():
    small = {f: s[:4] for f, s in shaped([0, 0, 0, 1, 1, 1]).items()}
    _, w = detect({"m4": ("arc_easy", small), "m10": ("math", shaped([0, 0, 0, 1, 1, 1]))})
    m4, m10 = one(w, "m4"), one(w, "m10")
    assert m4["has_window"] and m10["has_window"]
    assert m4["p_value"] == pytest.approx(1 / 70)
    assert m10["p_value"] == pytest.approx(1 / math.comb(20, 10))
    assert not m4["significant"] and m10["significant"]


def test_benjamini_hochberg_spans_every_dataset_of_the_run():
    clean = shaped([0, 0, 0, 0.8, 0.8, 0.8])
    alone = one(detect({"a": ("math", clean)})[1], "a")
    run = {"a": ("math", clean)} | {f"b{i}": ("mmlu", shaped([0.5] * 6)) for i in range(40)}
    pooled = one(detect(run)[1], "a")
    assert pooled["p_value"] == alone["p_value"]
    assert pooled["q_value"] > alone["q_value"]
    steps = windows.steps(windows.curves(frames(run)[0]))
    assert pooled["q_value"] == pytest.approx(
        alone["p_value"] * steps.height / (steps["p_value"] <= alone["p_value"]).sum()
    )


def test_tables_conform_to_their_schemas(tmp_path):
    c, w = detect({"clean": ("arc_easy", shaped([0, 0, 0, 1, 1, 1]))})
    tables.write_table(c, tmp_path / "curves.parquet", tables.CURVES)
    tables.write_table(w, tmp_path / "windows.parquet", tables.WINDOWS)
    assert tables.read_table(tmp_path / "windows.parquet", tables.WINDOWS).height == 1
    assert tables.read_table(tmp_path / "curves.parquet", tables.CURVES).height == 7


# --- a small run for the figure and explorer tests ------------------------------------------

FAKE_TEXTS = {
    "math": (
        r"Let's think step by step: We need $x^2 - 5x + 6 = 0$. Factor: $(x-2)(x-3) = 0$, "
        r"so $x = 2$ or $x = 3$. The sum of the roots is $2 + 3 = 5$. "
        r"Alternatively, by Vieta's formulas the sum is $-b/a = 5$. The answer is $5$."
    ),
    "arc_easy": RESPONSE,
    "logiqa": (
        "Let's think step by step: If all managers attend the meeting and Li is not at the "
        "meeting, then Li is not a manager. Option A says Li is a manager, which contradicts "
        "this. Option C restates the premise <b>without</b> adding anything & so does not "
        "follow. Therefore the conclusion that must be true is option D."
    ),
}


def _elicited_rows(graded: list[dict]) -> list[dict]:
    """ELICITED rows behind GRADED rows, as a greedy readout writes them (no answer_probs)."""
    rows: list[dict] = []
    for qid in dict.fromkeys(r["question_id"] for r in graded):
        mine = [r for r in graded if r["question_id"] == qid]
        keys = [("orig", None, None)]
        keys += [("stump", level, None) for level in dict.fromkeys(r["level"] for r in mine)]
        keys += [("resample", r["level"], r["sample"]) for r in mine]
        for kind, level, sample in keys:
            rows.append(
                {
                    "question_id": qid,
                    "kind": kind,
                    "level": level,
                    "sample": sample,
                    "source_finish_reason": None if kind == "stump" else "stop",
                    "answer_text": "The answer is (B).",
                    "n_answer_tokens": 6,
                    "answer_finish_reason": "stop",
                    "answer_probs": None,
                    "answer_logprob": None,
                }
            )
    return rows


def write_fake_run(root: Path, model: str = "fake", n_per_dataset: int = 8, m: int = 6) -> dict:
    """Write the upstream tables of a small run under root/results; return what it made."""
    rng = np.random.default_rng(7)
    shapes = [
        [0, 0, 0, 1, 1, 1],
        [0.2, 0.2, 0.3, 0.4, 0.6, 0.8],
        [1, 1, 1, 1, 1, 1],
        [0, 0.8, 0.3, 0.3, 1, 1],
        [0.1, 0.1, 0.2, 0.2, 0.2, 0.3],
        [0, 0, 1, 1, 1, 1],
    ]
    made: dict[str, list[str]] = {}
    for dataset, text in FAKE_TEXTS.items():
        questions, graded, truncated, base = [], [], [], []
        spans = _tokens(text)
        n = len(spans)
        for i in range(n_per_dataset):
            qid = f"{dataset}-{i:03d}"
            gold = "5" if dataset == "math" else "ABCD"[i % 4]
            orig = None if i == n_per_dataset - 1 else ("5" if dataset == "math" else "B")
            curve = shaped(shapes[i % len(shapes)], m)
            for f in curve:
                curve[f] = [None if rng.random() < 0.1 else s for s in curve[f]]
            rows = graded_rows(qid, curve, dataset=dataset, gold=gold, orig=orig)
            if dataset == "math":
                for r in rows:
                    r["answer_type"] = "math"
            graded += rows
            questions.append(
                {
                    "question_id": qid,
                    "dataset": dataset,
                    "problem": f"Question {i} of {dataset}: what is the answer?",
                    "choices": [] if dataset == "math" else ["A", "B", "C", "D"],
                    "gold": gold,
                    "answer_type": "math" if dataset == "math" else "multiple_choice",
                    "task": "math" if dataset == "math" else "science",
                    "subject": None,
                    "level": None,
                    "source_row": i,
                }
            )
            base.append(
                {
                    "question_id": qid,
                    "prompt_token_ids": [1, 2, 3],
                    "response_token_ids": list(range(n)),
                    "response_text": text,
                    "n_response_tokens": n,
                    "finish_reason": "stop",
                    "direct_text": "The answer is C.",
                    "n_direct_tokens": 5,
                    "direct_finish_reason": "stop",
                }
            )
            for f in LEVELS:
                cut = math.floor(f * n)
                truncated.append(
                    {
                        "question_id": qid,
                        "level": f,
                        "n_response_tokens": n,
                        "cut_tokens": cut,
                        "prefix_token_ids": list(range(cut)),
                        "prefix_text": text[: spans[cut - 1][1] if cut else 0],
                        "char_offset": spans[cut - 1][1] if cut else 0,
                    }
                )
        results = root / "results"
        run = results / model / dataset
        tables.write_table(
            as_table(questions, tables.QUESTIONS),
            results / "datasets" / f"{dataset}.parquet",
            tables.QUESTIONS,
        )
        tables.write_table(as_table(base, tables.BASE), run / "base.parquet", tables.BASE)
        tables.write_table(
            as_table(truncated, tables.TRUNCATED), run / "truncated.parquet", tables.TRUNCATED
        )
        tables.write_table(as_table(graded, tables.GRADED), run / "graded.parquet", tables.GRADED)
        tables.write_table(
            as_table(_elicited_rows(graded), tables.ELICITED),
            run / "elicited.parquet",
            tables.ELICITED,
        )
        made[dataset] = [q["question_id"] for q in questions]
    return made


def detect_fake_run(root: Path, model: str = "fake") -> tuple[pl.DataFrame, pl.DataFrame]:
    """Run detection over a run written by `write_fake_run`."""
    run = root / "results" / model

    def read(table: str, schema) -> pl.DataFrame:
        return pl.concat(
            [tables.read_table(run / d / f"{table}.parquet", schema) for d in FAKE_TEXTS]
        )

    return windows.detect(
        read("graded", tables.GRADED),
        read("truncated", tables.TRUNCATED),
        read("base", tables.BASE),
        jump=0.5,
        drop=0.3,
        fdr=0.05,
    )


def test_fake_run_has_windows_in_every_dataset(tmp_path):
    write_fake_run(tmp_path)
    c, w = detect_fake_run(tmp_path)
    per = w.group_by("dataset").agg(
        found=pl.col("has_window").sum(), undefined=pl.col("has_window").null_count()
    )
    assert per.height == 3 and (per["found"] > 0).all() and (per["undefined"] == 1).all()
    logiqa = w.filter(pl.col("has_window") & (pl.col("dataset") == "logiqa"))
    assert logiqa.height and logiqa["window_text"].str.len_chars().min() > 0


# --- the headline numbers -------------------------------------------------------------------


def test_summary_headline_numbers_by_hand():
    jump, flat = shaped([0, 0, 0, 1, 1, 1]), shaped([1, 1, 1, 1, 1, 1])
    spec = [("w_right", jump, "B"), ("w_wrong", jump, "A"), ("n1", flat, "B"), ("n2", flat, "B")]
    graded = [r for qid, curve, gold in spec for r in graded_rows(qid, curve, gold=gold)]
    graded += graded_rows("lost", flat, orig=None)
    _, truncated, base = frames(
        {q: ("arc_easy", c) for q, c, _ in spec} | {"lost": ("arc_easy", flat)}
    )
    c, w = windows.detect(
        as_table(graded, tables.GRADED), truncated, base, jump=0.5, drop=0.3, fdr=0.05
    )
    s = summary.summarize(c, w, "m", datasets=["arc_easy"])
    assert s["dataset"].to_list() == ["arc_easy", "all"]
    row = s.row(0, named=True)
    assert (row["n_questions"], row["n_curve"], row["cot_missing"]) == (5, 4, 1)
    assert row["cot_accuracy"] == 0.75 and row["direct_accuracy"] == 0.0
    assert row["window_share"] == 0.5 and row["n_window"] == 2
    assert (row["accuracy_with_window"], row["accuracy_without_window"]) == (0.5, 1.0)
    assert row["accuracy_gap"] == 0.5
    assert row["window_freq_wrong"] == 1.0 and row["window_freq_right"] == pytest.approx(1 / 3)
    assert row["window_freq_gap"] == pytest.approx(2 / 3)
    # stump: "D" below the jump at 0.3, the original's answer from 0.5 on
    assert row["stump_accuracy_f0.3"] == 0.5 and row["stump_accuracy_f0.5"] == 0.75
    assert s.row(1, named=True)["n_questions"] == 5
    md = summary.to_markdown(s, {"jump": 0.5, "drop": 0.3, "fdr": 0.05})
    assert "| arc_easy | 5 | 0.750 | 0.000 |" in md
    assert "| 0.500 | 0.730 | 0.667 |" in md, "the paper's ARC-Easy gap stands beside ours"


# --- the span rule (issue #17) -------------------------------------------------------------

DENSE = [round(0.05 * i, 2) for i in range(1, 20)]


def curve_frame(curves: dict[str, list[tuple[int, int]]], levels: list[float]) -> pl.DataFrame:
    """A CURVES-like frame from {question_id: [(consistent, graded) per level]}, plus f = 1."""
    rows = []
    for qid, counts in curves.items():
        for f, (k, n) in zip([*levels, 1.0], [*counts, (1, 1)], strict=True):
            rows.append(
                {
                    "dataset": "arc_easy",
                    "question_id": qid,
                    "level": f,
                    "n_consistent": k,
                    "n_graded": n,
                    "p_consistent": k / n,
                }
            )
    return pl.DataFrame(rows)


def call(frame: pl.DataFrame, rule: str, **kw) -> dict[str, dict]:
    found = windows.call_windows(frame, jump=0.5, drop=0.3, fdr=0.05, rule=rule, **kw)
    return {r["question_id"]: r for r in found.iter_rows(named=True)}


@pytest.mark.parametrize("samples", [4, 8, 25, 100])
def test_span_rule_is_the_research_rule_on_the_paper_grid(samples: int) -> None:
    rng = np.random.default_rng(17)
    curves = {}
    for i in range(300):
        # plateaus with one jump somewhere, a fall now and then
        p = np.clip(rng.choice([0.1, 0.3, 0.5]) + rng.normal(0, 0.15, len(LEVELS)), 0, 1)
        p[rng.integers(0, len(LEVELS)) :] += rng.choice([0.0, 0.3, 0.6])
        curves[f"q{i}"] = [(int(rng.binomial(samples, min(x, 1.0))), samples) for x in p]
    frame = curve_frame(curves, LEVELS)
    steps, span = call(frame, "steps"), call(frame, "span")
    assert sum(r["has_window"] for r in steps.values()) > 30
    # falls above drop vetoing windows, at every sample size
    assert sum(r["jump"] > 0.5 and r["max_drop"] > 0.3 for r in steps.values()) > 10
    # every column, byte for byte: the spans are the steps, read alone, at z = 0
    assert span == steps
    assert windows.spans(frame).height == windows.steps(frame).height


def test_span_rule_finds_a_rise_spread_over_dense_cuts() -> None:
    # P climbs 0.1 -> 0.8 over three cuts 0.05 apart; no step between two cuts exceeds 0.5
    p = [0.1] * 8 + [0.3, 0.55, 0.8] + [0.8] * 8
    frame = curve_frame({"q": [(round(x * 100), 100) for x in p]}, DENSE)
    steps, span = call(frame, "steps")["q"], call(frame, "span")["q"]
    assert steps["has_window"] is False and steps["jump"] == pytest.approx(0.25)
    assert span["has_window"] is True
    # the span over the fewest steps rising by more than 0.5: from the last 0.1 (f = 0.4) to
    # the first 0.8 (0.55); each end read from its plateau (0.1 and 0.8 exactly)
    assert (span["level_lo"], span["level_hi"]) == (0.4, 0.55)
    assert span["jump"] == pytest.approx(0.7) and span["significant"]
    # the BH correction counts every span tested: more than the steps
    assert windows.spans(frame).height > windows.steps(frame).height
    narrow = call(frame, "span", max_span=0.1)["q"]
    assert narrow["has_window"] is False  # no span of 0.1 rises by more than 0.5


def test_plateaus_pool_a_flat_stretch_and_stop_at_a_rise() -> None:
    # 0.25 on ten levels of 8 samples, then 1 from f = 0.55 on
    frame = curve_frame({"q": [(2, 8)] * 10 + [(8, 8)] * 9}, DENSE)
    plateau = {r["level"]: r for r in windows.plateaus(frame).iter_rows(named=True)}
    assert (plateau[0.5]["k_before"], plateau[0.5]["n_before"]) == (20, 80)
    assert (plateau[0.5]["k_after"], plateau[0.5]["n_after"]) == (2, 8)  # 1s not pooled
    assert (plateau[0.55]["k_after"], plateau[0.55]["n_after"]) == (72, 72)
    assert (plateau[0.55]["k_before"], plateau[0.55]["n_before"]) == (8, 8)
    assert 1.0 not in plateau  # the anchor is exact, not measured
    span = windows.spans(frame).filter((pl.col("level_lo") == 0.5) & (pl.col("level_hi") == 0.55))
    assert span.select("k_lo", "n_lo", "k_hi", "n_hi").row(0) == (20, 80, 72, 72)


def test_a_noisy_pair_of_levels_on_a_dense_grid_is_no_window() -> None:
    # P is 1/2 throughout; one level reads 2/8 and the next 7/8 by chance (a rise of 0.625
    # between two levels): read from their plateaus the rise is far below 0.5
    counts = [(4, 8)] * 9 + [(2, 8), (7, 8)] + [(4, 8)] * 8
    frame = curve_frame({"q": counts}, DENSE)
    pair = windows.spans(frame, max_span=1.0)
    assert pair.filter(pl.col("n_steps") == 1)["rise"].max() < 0.5
    assert call(frame, "span")["q"]["has_window"] is False
    # each span is tested at the research rule's level spread over the spans of the curve
    bounds = windows.rise_bounds(windows.spans(frame), ["dataset", "question_id"])
    assert (bounds["rise_low"] < bounds["rise"]).all()
    paper = windows.rise_bounds(
        windows.spans(curve_frame({"q": [(4, 8)] * len(LEVELS)}, LEVELS)),
        ["dataset", "question_id"],
    )
    assert (paper["rise_low"] == paper["rise"]).all()


def test_noise_does_not_veto_a_span_window_but_a_real_fall_does() -> None:
    # one noisy level on a dense grid: 6/8 -> 3/8 -> 6/8 falls by 0.375, far from significant
    noisy = [(1, 8)] * 10 + [(6, 8), (3, 8), (6, 8)] + [(8, 8)] * 6
    # a real fall: 90/100 -> 40/100 stays down
    real = [(5, 100)] * 10 + [(90, 100)] * 3 + [(40, 100)] * 6
    frame = curve_frame({"noisy": noisy, "real": real}, DENSE)
    steps, span = call(frame, "steps"), call(frame, "span")
    assert steps["noisy"]["has_window"] is False and steps["noisy"]["max_drop"] == 0.375
    assert span["noisy"]["has_window"] is True and span["noisy"]["max_drop"] == 0.0
    # from the last 1/8 into the noisy stretch, which its plateau reads as mostly 8/8
    assert span["noisy"]["level_lo"] == 0.5 and 0.55 <= span["noisy"]["level_hi"] <= 0.7
    assert steps["real"]["has_window"] is False
    assert span["real"]["has_window"] is False
    # the fall's lower bound: below its estimate (0.5), above drop
    assert 0.3 < span["real"]["max_drop"] < 0.5


def test_unknown_rule_is_refused() -> None:
    frame = curve_frame({"q": [(1, 2)] * len(LEVELS)}, LEVELS)
    with pytest.raises(ValueError, match="windows.rule 'stairs'"):
        windows.call_windows(frame, jump=0.5, drop=0.3, fdr=0.05, rule="stairs")


def test_importance_of_each_cut() -> None:
    from critical_windows.analysis import importance

    graded = pl.DataFrame(
        {
            "question_id": ["q"] * 8,
            "level": [0.3] * 4 + [0.7] * 4,
            "resample_answer": ["A", "A", "B", "C", "A", "A", "A", "A"],
            "orig_answer": ["A"] * 8,
        }
    )
    curve = curve_frame({"q": [(2, 4), (4, 4)]}, [0.3, 0.7]).with_columns(
        cut_tokens=pl.Series([3, 7, 10]),
        char_offset=pl.Series([12, 30, 41]),
        unit_index=pl.Series([1, 3, 4]),
    )
    out = importance.importance(graded, curve, seed=1)
    tables.conform(out, tables.IMPORTANCE, "importance")
    first, last = out.row(0, named=True), out.row(1, named=True)
    assert (first["level_lo"], first["level_hi"], first["unit_index"]) == (0.3, 0.7, 1)
    assert (first["char_start"], first["char_end"], last["char_end"]) == (12, 30, 41)
    assert first["delta_p"] == 0.5 and last["delta_p"] == 0.0
    # KL({A: 1} || {A: .5, B: .25, C: .25}) = log 2, up to the smoothing
    assert first["kl"] == pytest.approx(np.log(2), abs=0.02)
    assert first["kl_low"] <= first["kl"] <= first["kl_high"]
    assert last["kl"] == pytest.approx(0.0, abs=1e-9)
    assert first["delta_p_low"] < 0.5 < first["delta_p_high"] <= 1
    # at f = 1 the interval is the lower level's Wilson interval reflected (P(1) is exact)
    low, high = statistics.wilson_interval(4, 4)
    assert (last["delta_p_low"], last["delta_p_high"]) == pytest.approx((1 - high, 1 - low))
    again = importance.importance(graded, curve, seed=1)
    assert again["kl_low"].to_list() == out["kl_low"].to_list()


def test_newcombe_interval_matches_the_published_example() -> None:
    from critical_windows.analysis.importance import newcombe_interval

    # Newcombe (1998), table II, example (a): 56/70 - 48/80, method 10: 0.0524 to 0.3339
    low, high = newcombe_interval(np.array([56]), np.array([70]), np.array([48]), np.array([80]))
    assert (low[0], high[0]) == pytest.approx((0.0524, 0.3339), abs=1e-4)
