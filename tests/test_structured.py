"""The structured-output experiment: the form, conformance, P(s | prefix) and the theory's
bounds on hand-made samples, and a small real run with the embedded model."""

from __future__ import annotations

import itertools
from pathlib import Path

import polars as pl
import pytest
from conftest import make_workdir, snakemake

from critical_windows import structured, tables

BLANKS = [
    "The (Pirate/Ninja) jumped across the ship.",
    "She adopted a (Dog/Cat) from the shelter.",
    "The (River/Bridge) sparkled under the sun.",
    "A (Dragon/Knight) guarded the castle gates.",
    "He ordered (Pizza/Sushi) for dinner.",
]
PREFILL = "\n\n1. "


@pytest.fixture(scope="module")
def form() -> structured.Form:
    return structured.make_form("Fill in the blanks.", BLANKS, PREFILL)


def _samples(form: structured.Form, texts: list[str]) -> pl.DataFrame:
    """A SAMPLES frame of generated texts (after the prefill), as the sampling rule writes."""
    rows = []
    for i, text in enumerate(texts):
        choices = form.choices_of(form.prefill + text)
        rows.append(
            {
                "sample": i,
                "text": text,
                "n_tokens": 40,
                "finish_reason": "stop",
                "conforming": choices is not None,
                "choices": None
                if choices is None
                else [b.options[c] for b, c in zip(form.blanks, choices, strict=True)],
                "string": None if choices is None else form.answer(choices)[0],
            }
        )
    return pl.DataFrame(rows, schema=pl.Schema(structured.SAMPLES))


def _generated(form: structured.Form, choices: list[int]) -> str:
    return form.answer(choices)[0][len(form.prefill) :]


def test_form_renders_the_prompt_and_the_answers(form) -> None:
    assert form.user_message().splitlines()[1:] == [f"{i}. {b}" for i, b in enumerate(BLANKS, 1)]
    answer, positions = form.answer([0, 1, 0, 1, 1])
    assert answer == (
        "\n\n1. The Pirate jumped across the ship.\n2. She adopted a Cat from the shelter.\n"
        "3. The River sparkled under the sun.\n4. A Knight guarded the castle gates.\n"
        "5. He ordered Sushi for dinner."
    )
    assert [answer[p : p + 3] for p in positions] == ["Pir", "Cat", "Riv", "Kni", "Sus"]
    assert answer.startswith(PREFILL)


def test_conformance_is_exact_up_to_trailing_whitespace(form) -> None:
    good = _generated(form, [1, 1, 1, 0, 0])
    assert form.choices_of(PREFILL + good) == [1, 1, 1, 0, 0]
    assert form.choices_of(PREFILL + good + "\n") == [1, 1, 1, 0, 0]
    # what SmolLM2-135M-Instruct writes: the options copied, a repeated number, extra text
    for bad in [
        "1. The Pirate jumped across the ship.\n2. She adopted a Cat from the shelter.",
        "The Pirate/Ninja jumped across the ship.\n2. She adopted a (Dog/Cat) from the shelter.",
        good.replace("Cat", "cat"),
        good + "\n\nI hope this helps!",
    ]:
        assert form.choices_of(PREFILL + bad) is None


def test_form_refuses_what_the_bounds_cannot_handle() -> None:
    with pytest.raises(ValueError, match="exactly one blank"):
        structured.make_form("x", ["The (A/B) and (C/D)."], PREFILL)
    with pytest.raises(ValueError, match="start with the same character"):
        structured.make_form("x", ["A (Cat/Cow) ran."], PREFILL)
    with pytest.raises(ValueError, match="must be the start of the answer"):
        structured.make_form("x", BLANKS, "\n\n1. A ")
    with pytest.raises(ValueError, match="whole number"):
        structured.grid_points(0.03)


def test_curve_and_bounds_on_hand_made_samples(form) -> None:
    # 8 copies of s, 4 that differ from s at blank 3, 2 at blank 5, 1 at blank 1, 3 junk
    s = [0, 0, 0, 0, 0]
    texts = (
        [_generated(form, s)] * 8
        + [_generated(form, [0, 0, 1, 0, 0])] * 4
        + [_generated(form, [0, 0, 0, 0, 1])] * 2
        + [_generated(form, [1, 0, 0, 0, 0])]
        + ["The (Pirate/Ninja) jumped across the ship."] * 3
    )
    curves, blanks, conformance = structured.estimate(_samples(form, texts), form, 0.01)
    assert conformance.row(0, named=True) == {
        "samples": 18,
        "stopped": 18,
        "conforming": 15,
        "conforming_share": 15 / 18,
        "distinct_strings": 4,
        "copied_options": 3,
    }
    top = curves.filter(pl.col("rank") == 1)
    assert top["count"][0] == 8 and top.height == 101
    string, n = top["string"][0], len(top["string"][0])
    assert string == form.answer(s)[0]
    p = dict(zip(top["grid"].round(2), top["p_same"], strict=True))
    assert p[0.0] == pytest.approx(8 / 15) and p[1.0] == 1.0
    # P only rises, and only at the three blanks where other samples depart from s
    values = top["p_same"].to_list()
    assert all(b >= a for a, b in zip(values, values[1:], strict=False))
    assert sorted(set(values)) == pytest.approx([8 / 15, 8 / 14, 8 / 10, 1.0])
    rows = {r["blank"]: r for r in blanks.filter(pl.col("rank") == 1).iter_rows(named=True)}
    _, positions = form.answer(s)
    for b, pos in zip((1, 3, 5), (positions[0], positions[2], positions[4]), strict=True):
        r = rows[b]
        assert r["position"] == pos and r["length"] == n
        assert r["t_lower"] == pytest.approx((100 * pos // n) / 100)
        assert r["t_upper"] == pytest.approx(-(-100 * (pos + 1) // n) / 100)
        assert r["inside"] is True and r["t_lower"] <= r["jump_lo"] < r["jump_hi"] <= r["t_upper"]
    assert [rows[b]["alternatives"] for b in (1, 3, 5)] == [1, 4, 2]
    assert rows[3]["rise"] == pytest.approx(8 / 10 - 8 / 14)
    for b in (2, 4):  # nobody chose the other option: no rise, nothing to check
        assert rows[b]["alternatives"] == 0 and rows[b]["inside"] is None
        assert rows[b]["jump_lo"] is None


def test_upper_bound_counts_the_first_character_itself() -> None:
    """A word starting exactly on a grid point: the prefix there stops just before it, so
    P rises one step later, at (pos + 1) / len rounded up, not at pos / len."""
    form = structured.make_form("x", ["ab (Xx/Yy)" + "." * 90], "\n\n1. ")
    s, (pos,) = form.answer([0])
    assert (len(s), pos) == (100, 8)
    texts = [_generated(form, [0])] * 3 + [_generated(form, [1])]
    curves, blanks, _ = structured.estimate(_samples(form, texts), form, 0.01)
    row = blanks.filter(pl.col("rank") == 1).row(0, named=True)
    assert (row["t_lower"], row["t_upper"]) == (0.08, 0.09)
    assert (row["jump_lo"], row["jump_hi"], row["inside"]) == (0.08, 0.09, True)
    top = curves.filter(pl.col("rank") == 1)
    at = dict(zip(top["prefix_chars"], top["p_same"], strict=False))
    assert at[8] == 0.75 and at[9] == 1.0


def test_figure_of_a_string_and_of_a_missing_rank(form, tmp_path: Path) -> None:
    texts = [
        _generated(form, list(c)) for c in itertools.product([0, 1], repeat=5) for _ in range(2)
    ]
    curves, blanks, conformance = structured.estimate(_samples(form, texts[:-1]), form, 0.01)
    assert blanks["inside"].drop_nulls().all() and blanks.height == 32 * 5
    structured.render_string(
        1, curves, blanks, conformance, tmp_path / "1.html", tmp_path / "1.png"
    )
    html = (tmp_path / "1.html").read_text()
    first = blanks.filter(pl.col("rank") == 1)["option"].to_list()
    assert "T_upper" in html and all(f'"{word}"' in html for word in first)
    assert (tmp_path / "1.png").read_bytes()[:4] == b"\x89PNG"
    structured.render_string(
        99, curves, blanks, conformance, tmp_path / "9.html", tmp_path / "9.png"
    )
    assert "no conforming string of rank 99" in (tmp_path / "9.html").read_text()


@pytest.mark.slow
def test_small_real_run(tmp_path: Path, embedded_model: Path) -> None:
    config = {
        "experiments": ["structured"],
        "models": {"smollm2": {"path": "embedded"}},
        "datasets": ["arc_easy"],
        "engine": {"dtype": "float32", "max_model_len": 1024, "cpu_kv_cache_gib": 1},
        "structured": {
            "samples": 12,
            "samples_per_request": 8,
            "max_tokens": 40,
            "strings_drawn": 2,
        },
    }
    work = make_workdir(tmp_path, config, embedded_model)
    snakemake(work)
    out = work / "results/structured/smollm2"
    samples = tables.read_table(out / "samples.parquet", structured.SAMPLES)
    assert samples.height == 12 and samples["sample"].to_list() == list(range(12))
    assert (samples["n_tokens"] <= 40).all()
    assert set(samples["finish_reason"]) <= {"stop", "length"}
    form = structured.make_form(
        **{k: structured_default(k) for k in ("prompt", "blanks", "prefill")}
    )
    for r in samples.iter_rows(named=True):
        assert r["conforming"] == (form.choices_of(form.prefill + r["text"]) is not None)
    conformance = pl.read_csv(out / "conformance.csv").row(0, named=True)
    assert conformance["samples"] == 12
    assert conformance["conforming"] == samples["conforming"].sum()
    blanks = tables.read_table(out / "blanks.parquet", structured.BLANKS)
    assert blanks.height == conformance["distinct_strings"] * 5
    assert (out / "blanks.csv").read_text().startswith(",".join(structured.BLANKS.names))
    assert blanks["inside"].drop_nulls().all()
    for rank in (1, 2):
        assert (out / f"figures/string_{rank}.png").read_bytes()[:4] == b"\x89PNG"
    assert not (work / "results/smollm2").exists()  # the chain-of-thought stages did not run


def structured_default(key: str):
    """A default of the config schema's `structured` block."""
    import yaml

    schema = yaml.safe_load(
        (Path(__file__).resolve().parents[1] / "workflow/schemas/config.schema.yaml").read_text()
    )
    return schema["properties"]["structured"]["properties"][key]["default"]
