"""Sentence and step units of real reasoning text, and the token cuts at their starts."""

from __future__ import annotations

import json
import re
from pathlib import Path

import polars as pl
import pytest
from conftest import TINY_CONFIG, make_workdir, snakemake

from critical_windows.cot import segmentation
from critical_windows.cot.generation import truncate_responses
from critical_windows.cot.segmentation import Cut, segment, select_cuts, unit_cuts
from critical_windows.engine import synthetic
from critical_windows.io import tables

# Base responses of the embedded SmolLM2-135M-Instruct (config.yaml, seed 2243), verbatim.
SMOLLM_MATH = (
    "\nTo find $\\left(16\\sqrt[3]{a^2}\\right)^{\\frac 13}$, we need to find the cube root of "
    "$a^2$.\nFirst, we find the cube root of $a^2$, which is $\\sqrt[3]{a^2}$.\nNow we multiply "
    "$\\left(16\\sqrt[3]{a^2}\\right)^{\\frac 13}$ by itself, which gives us "
    "$16\\sqrt[3]{a^2}$.\nNow we multiply $\\left(16\\sqrt[3]{a^"
)
SMOLLM_LOGIQA = (
    "\n(A) Most governments will remind their citizens. do not go to dangerous country A.\n"
    "(C) If most countries assisting country A continue to send personnel to country A.the "
    "kidnapping will also occur.\n(B) Anti-government armed forces will also create "
    "kidnappings.\n(D) The government of country H is opposed to using force to rescue the "
    "hostages.\n\nTo answer the question, we need to consider the given statements:\n(A) Most "
    "governments will remind their citizens. do not go to dangerous country A.\n(C) If most "
    "countries assisting country A continue to send personnel to"
)
SMOLLM_ARC = (
    "\nA correct answer would be:\nD) Thermal\n\nStep 1: Identify the correct answer\nA correct "
    'answer is "Thermal" because it refers to heat energy.\n\nStep 2: Choose the correct '
    'answer\nThe correct answer is "Thermal" because it refers to heat energy.\n\nStep 3: '
    "Provide a detailed explanation of the science question\nA correct answer to the question "
    'about thermal energy is "Thermal" because it refers to heat energy.\n\nStep 4: Provide a '
    "detailed explanation of the science question\nThe correct answer is D) Thermal"
)
SMOLLM_BIOLOGY = (
    "\nA cell wall is a membrane that surrounds the cell's cytoplasm and is made up of a "
    "combination of proteins and other molecules that provide structural support and "
    "protection.\n\nThe nucleus is the control center of the cell, where genetic material is "
    "stored. The cell membrane is a semi-permeable barrier that regulates the flow of molecules "
    "across its surface. The cell wall is a rigid framework that provides structural support "
    "and protection to the cell.\n\nThe mitochondrion is a single layer of cristae within the "
    "cell wall that serves as a site for the production of ATP and NADPH. These structures are "
    "not part of the cell membrane"
)
# A reasoning model's trace (written in the style of DeepSeek-R1 / QwQ outputs).
R1_TRACE = (
    "<think>\nOkay, so I need to find the value of $x$ such that $2x + 3 = 7$. Let me think. "
    "Subtracting 3 from both sides gives $2x = 4$, i.e. $x = 2$.\n\nWait, let me double-check "
    "with the formula \\frac{b}{a}. Here that's \\frac{4}{2}. So $x = 2.0$ and not 2.5.\n"
    "</think>\n\n**Step 1:** Subtract 3: $2x = 4$.\n**Step 2:** Divide by 2: "
    "\\[ x = \\frac{4}{2} = 2. \\]\n\nThe answer is $\\boxed{2}$."
)
MIXED = (
    "To solve this, note that Dr. Lee's estimate of 3.14 for $\\pi$ is close, e.g. within 0.01. "
    "We have:\n1. The radius is 2.5 cm.\n2. The area is $\\pi r^2 = 3.14 \\times 6.25 = "
    "19.625$.\nStep 3: Round it. The area is about 19.6 cm$^2$.\n\n```python\nr = 2.5\n"
    "print(3.14 * r ** 2)  # 19.625. Done\n```\nSo the answer is (C)."
)
REAL_TEXTS = [SMOLLM_MATH, SMOLLM_LOGIQA, SMOLLM_ARC, SMOLLM_BIOLOGY, R1_TRACE, MIXED]


def texts(text: str, unit: str) -> list[str]:
    return [u.text for u in segment(text, unit)]


@pytest.mark.parametrize("unit", ["sentence", "step"])
@pytest.mark.parametrize("text", REAL_TEXTS)
def test_units_cover_the_text_exactly(text: str, unit: str) -> None:
    units = segment(text, unit)
    assert "".join(u.text for u in units) == text
    assert [u.index for u in units] == list(range(len(units)))
    for a, b in zip(units, units[1:], strict=False):
        assert a.end == b.start and a.text.strip()
    for u in units:
        assert text[u.start : u.end] == u.text
        assert text[u.content_start] == u.text.lstrip()[0]


def test_sentences_of_a_reasoning_trace() -> None:
    assert texts(R1_TRACE, "sentence") == [
        "<think>\nOkay, so I need to find the value of $x$ such that $2x + 3 = 7$. ",
        "Let me think. ",
        # "i.e." is an abbreviation, "$x = 2$." ends the sentence
        "Subtracting 3 from both sides gives $2x = 4$, i.e. $x = 2$.\n\n",
        # a bare \frac{b}{a}. ends a sentence; its braces are not split
        "Wait, let me double-check with the formula \\frac{b}{a}. ",
        "Here that's \\frac{4}{2}. ",
        # decimals are not full stops; "</think>" closes the sentence before it
        "So $x = 2.0$ and not 2.5.\n</think>\n\n",
        "**Step 1:** Subtract 3: $2x = 4$.\n",
        # the full stop inside display math is not a boundary
        "**Step 2:** Divide by 2: \\[ x = \\frac{4}{2} = 2. \\]\n\n",
        "The answer is $\\boxed{2}$.",
    ]


def test_steps_of_a_reasoning_trace() -> None:
    assert texts(R1_TRACE, "step") == [
        "<think>\nOkay, so I need to find the value of $x$ such that $2x + 3 = 7$. Let me think. "
        "Subtracting 3 from both sides gives $2x = 4$, i.e. $x = 2$.\n\n",
        "Wait, let me double-check with the formula \\frac{b}{a}. Here that's \\frac{4}{2}. So "
        "$x = 2.0$ and not 2.5.\n</think>\n\n",
        "**Step 1:** Subtract 3: $2x = 4$.\n",
        "**Step 2:** Divide by 2: \\[ x = \\frac{4}{2} = 2. \\]\n\n",
        "The answer is $\\boxed{2}$.",
    ]


def test_enumerations_abbreviations_decimals_and_code() -> None:
    assert texts(MIXED, "sentence") == [
        "To solve this, note that Dr. Lee's estimate of 3.14 for $\\pi$ is close, e.g. within "
        "0.01. ",
        "We have:\n",
        # "1. " opens its sentence, it is not one
        "1. The radius is 2.5 cm.\n",
        "2. The area is $\\pi r^2 = 3.14 \\times 6.25 = 19.625$.\n",
        "Step 3: Round it. ",
        "The area is about 19.6 cm$^2$.\n\n",
        # a fenced code block is one unit, full stops and newlines inside it included
        "```python\nr = 2.5\nprint(3.14 * r ** 2)  # 19.625. Done\n```\n",
        "So the answer is (C).",
    ]
    assert texts(MIXED, "step")[1:4] == [
        "1. The radius is 2.5 cm.\n",
        "2. The area is $\\pi r^2 = 3.14 \\times 6.25 = 19.625$.\n",
        "Step 3: Round it. The area is about 19.6 cm$^2$.\n\n",
    ]


def test_a_number_inside_a_line_is_not_a_list_item() -> None:
    assert texts("1. First, add 2. Then 3.\n2. Second step here.", "sentence") == [
        "1. First, add 2. ",
        "Then 3.\n",
        "2. Second step here.",
    ]


@pytest.mark.slow
def test_the_embedded_models_outputs() -> None:
    arc = texts(SMOLLM_ARC, "step")
    assert arc[0] == "\nA correct answer would be:\n"
    assert arc[1] == "D) Thermal\n\n"  # a lettered option opens a step
    assert [s.split(":")[0] for s in arc[2:]] == ["Step 1", "Step 2", "Step 3", "Step 4"]
    bio = texts(SMOLLM_BIOLOGY, "sentence")
    assert len(bio) == 6 and bio[-1] == "These structures are not part of the cell membrane"
    assert len(texts(SMOLLM_BIOLOGY, "step")) == 3
    logiqa = texts(SMOLLM_LOGIQA, "step")
    assert [s[:3] for s in logiqa[:4]] == ["\n(A", "(C)", "(B)", "(D)"]
    math = texts(SMOLLM_MATH, "sentence")
    # inline math with its own braces and full stops stays inside the sentence
    assert math[0] == (
        "\nTo find $\\left(16\\sqrt[3]{a^2}\\right)^{\\frac 13}$, we need to find the cube root"
        " of $a^2$.\n"
    )
    assert len(math) == 4


def test_empty_text_and_unknown_unit() -> None:
    assert segment("", "sentence") == []
    with pytest.raises(ValueError, match="unknown cut unit 'word'"):
        segment("Hi.", "word")


def test_select_cuts_every_kth_and_at_most() -> None:
    cuts = [Cut(i, 10 * i, 40 * i) for i in range(1, 11)]
    assert select_cuts(cuts) == cuts
    assert [c.unit_index for c in select_cuts(cuts, every=3)] == [3, 6, 9]
    assert [c.unit_index for c in select_cuts(cuts, most=4)] == [1, 4, 7, 10]
    assert [c.unit_index for c in select_cuts(cuts, every=2, most=2)] == [2, 10]
    with pytest.raises(ValueError, match="cuts.unit 'word'"):
        segmentation.CutSettings.from_mapping({"unit": "word"})


@pytest.fixture(scope="module")
def tokenizer(embedded_model: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(embedded_model)


@pytest.mark.slow
@pytest.mark.parametrize("unit", ["sentence", "step"])
@pytest.mark.parametrize("text", REAL_TEXTS)
def test_each_cut_ends_where_its_unit_ends(tokenizer, text: str, unit: str) -> None:
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids, skip_special_tokens=True) == text
    units = segment(text, unit)
    cuts = unit_cuts(text, ids, tokenizer, unit)
    assert len(cuts) <= max(len(units) - 1, 0)
    for cut in cuts:
        prefix = tokenizer.decode(ids[: cut.cut_tokens], skip_special_tokens=True)
        before = units[cut.unit_index - 1]
        # the prefix is the text up to the end of the unit before the cut (a token may carry
        # the whitespace between the two units)
        assert prefix.rstrip() == text[: before.content_end]
        assert text.startswith(prefix) and cut.char_offset == len(prefix)
        # and the next token is the one that starts the unit
        nxt = tokenizer.decode(ids[: cut.cut_tokens + 1], skip_special_tokens=True)
        assert len(nxt) > units[cut.unit_index].content_start
    # every unit but the first gets its cut here (no two units start in one token)
    assert [c.unit_index for c in cuts] == list(range(1, len(units)))


@pytest.mark.slow
def test_truncate_at_sentences(tokenizer) -> None:
    rows = []
    for i, text in enumerate(REAL_TEXTS):
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        rows.append({"question_id": f"q{i}", "response_token_ids": ids, "response_text": text})
    base = pl.DataFrame(rows)
    t = truncate_responses(base, [0.5], tokenizer, {"unit": "sentence", "max": 5})
    tables.conform(t, tables.TRUNCATED, "truncated")
    for q in t.partition_by("question_id"):
        text = REAL_TEXTS[int(q["question_id"][0][1:])]
        assert q.height <= 5 and q["n_units"].n_unique() == 1
        assert q["n_units"][0] == len(segment(text, "sentence"))
        assert q["level"].is_sorted() and q["level"].is_unique().all()
        for row in q.to_dicts():
            assert row["level"] == row["cut_tokens"] / row["n_response_tokens"]
            assert text[: row["char_offset"]] == row["prefix_text"]
    fraction = truncate_responses(base, [0.5], tokenizer, {"unit": "fraction"})
    assert fraction["unit_index"].is_null().all() and fraction["level"].unique().to_list() == [0.5]


@pytest.mark.slow
def test_sentence_cuts_end_to_end(tmp_path: Path, embedded_model: Path) -> None:
    """config/steps.yaml's settings on the tiny run: sentence cuts, the span rule, the
    importance table, the explorer's unit view and the window-position figure."""
    config = {
        **TINY_CONFIG,
        "cuts": {"unit": "sentence", "max": 3},
        "windows": {"rule": "span", "jump": 0.5, "drop": 0.3, "fdr": 0.05},
    }
    work = make_workdir(tmp_path / "run", config, embedded_model)
    out = "results/smollm2"
    snakemake(
        work,
        f"{out}/explorer.html",
        f"{out}/figures/window_positions.png",
        f"{out}/summary.csv",
    )
    for dataset in TINY_CONFIG["datasets"]:
        run = work / out / dataset
        base = tables.read_table(run / "base.parquet", tables.BASE)
        cut = tables.read_table(run / "truncated.parquet", tables.TRUNCATED)
        assert cut.height and cut["unit_index"].is_not_null().all()
        assert set(cut["level"].to_list()).isdisjoint(TINY_CONFIG["levels"])
        for row in cut.join(base, on="question_id").iter_rows(named=True):
            units = segment(row["response_text"], "sentence")
            assert row["n_units"] == len(units) and row["level"] < 1
            # the prefix ends where the unit before the cut ends
            before = units[row["unit_index"] - 1]
            assert row["prefix_text"].rstrip() == row["response_text"][: before.content_end]
        curves = tables.read_table(run / "curves.parquet", tables.CURVES)
        merged = curves.filter(pl.col("level") < 1).join(
            cut, on=["question_id", "level"], suffix="_cut"
        )
        assert merged.height == curves.filter(pl.col("level") < 1).height
        assert (merged["unit_index"] == merged["unit_index_cut"]).all()
        assert (merged["char_offset"] == merged["char_offset_cut"]).all()
        scores = tables.read_table(run / "importance.parquet", tables.IMPORTANCE)
        n_defined = (
            curves.filter(pl.col("p_consistent").is_not_null()).group_by("question_id").len()
        )
        assert scores.height == int((n_defined["len"] - 1).clip(lower_bound=0).sum())
        assert scores["delta_p"].is_not_null().all() and (scores["kl"] >= 0).all()
        assert (scores["delta_p_low"] <= scores["delta_p"]).all()
        windows = tables.read_table(run / "windows.parquet", tables.WINDOWS)
        assert (windows["n_units"] >= 1).all()
        assert windows.filter(pl.col("has_window"))["unit_start"].is_not_null().all()
    page = (work / out / "explorer.html").read_text()
    data = json.loads(
        re.search(r'<script type="application/json" id="data">(.*?)</script>', page, re.S)[1]
    )
    scored = set()
    for dataset in TINY_CONFIG["datasets"]:
        path = work / out / dataset / "importance.parquet"
        scored |= set(tables.read_table(path, tables.IMPORTANCE)["question_id"].to_list())
    for q in data["questions"]:
        # a question whose cuts have answers gets the units view, the others none
        assert (q["units"] is not None) == (q["id"] in scored), q["id"]
        if q["units"]:
            assert "".join(u[0] for u in q["units"]) == "".join(s[0] for s in q["segments"])
    assert (work / out / "figures/window_positions.png").stat().st_size > 1000


@pytest.mark.slow
def test_adaptive_sampling_chooses_among_unit_cuts(tmp_path: Path) -> None:
    config = {
        "models": {"synthetic": {"path": "synthetic"}},
        "datasets": ["arc_easy"],
        "questions_per_dataset": 8,
        "engine": {"max_model_len": 16384},
        "sampling": {"temperature": 0.6, "top_p": 0.9, "max_tokens": 128},
        "sampling_strategy": "adaptive",
        "cuts": {"unit": "sentence"},
        "elicitation_max_tokens": 32,
        "batch_size": 512,
    }
    work = make_workdir(tmp_path / "run", config)
    snakemake(work, "results/synthetic/summary.csv", "results/synthetic/explorer.html")
    out = work / "results/synthetic/arc_easy"
    base = tables.read_table(out / "base.parquet", tables.BASE)
    res = tables.read_table(out / "resampled.parquet", tables.RESAMPLED)
    cut = tables.read_table(out / "truncated.parquet", tables.TRUNCATED)
    tok = synthetic.SyntheticTokenizer()
    units = segmentation.truncate_at_units(base, tok, segmentation.CutSettings("sentence"))
    # the cuts are unit cuts (their unit index kept), exactly the levels resampled
    assert cut.join(
        units, on=["question_id", "level", "cut_tokens", "unit_index"], how="anti"
    ).is_empty()
    assert (
        cut.select("question_id", "level")
        .sort("question_id", "level")
        .equals(res.select("question_id", "level").unique().sort("question_id", "level"))
    )
    assert cut.height < units.height and "bisection" in set(res["chosen_by"])
    found = tables.read_table(out / "windows.parquet", tables.WINDOWS)
    hit = found.filter(pl.col("has_window"))
    assert hit.height > 0 and hit["unit_start"].null_count() == 0
