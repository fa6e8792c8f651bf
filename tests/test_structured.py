"""The structured-output experiment: the form, conformance, P(s | prefix) and the theory's
bounds on hand-made samples; the constrained sampler and the exact probabilities on the
synthetic form model (closed form) and the embedded model; a small real run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
from conftest import make_workdir, snakemake

from critical_windows.cot import prompts
from critical_windows.engine.types import Sampling
from critical_windows.experiments.structured import constrained, forms
from critical_windows.io import tables

BLANKS = [
    "The (Pirate/Ninja) jumped across the ship.",
    "She adopted a (Dog/Cat) from the shelter.",
    "The (River/Bridge) sparkled under the sun.",
    "A (Dragon/Knight) guarded the castle gates.",
    "He ordered (Pizza/Sushi) for dinner.",
]
PREFILL = "\n\n1. "


@pytest.fixture(scope="module")
def form() -> forms.Form:
    return forms.make_form("Fill in the blanks.", BLANKS, PREFILL)


def _samples(form: forms.Form, texts: list[str]) -> pl.DataFrame:
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
    return pl.DataFrame(rows, schema=pl.Schema(tables.STRUCTURED_SAMPLES))


def _generated(form: forms.Form, choices: list[int]) -> str:
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
        forms.make_form("x", ["The (A/B) and (C/D)."], PREFILL)
    with pytest.raises(ValueError, match="start with the same character"):
        forms.make_form("x", ["A (Cat/Cow) ran."], PREFILL)
    with pytest.raises(ValueError, match="must be the start of the answer"):
        forms.make_form("x", BLANKS, "\n\n1. A ")
    with pytest.raises(ValueError, match="whole number"):
        forms.grid_points(0.03)


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
    curves, blanks, conformance = forms.estimate(_samples(form, texts), form, 0.01)
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
    form = forms.make_form("x", ["ab (Xx/Yy)" + "." * 90], "\n\n1. ")
    s, (pos,) = form.answer([0])
    assert (len(s), pos) == (100, 8)
    texts = [_generated(form, [0])] * 3 + [_generated(form, [1])]
    curves, blanks, _ = forms.estimate(_samples(form, texts), form, 0.01)
    row = blanks.filter(pl.col("rank") == 1).row(0, named=True)
    assert (row["t_lower"], row["t_upper"]) == (0.08, 0.09)
    assert (row["jump_lo"], row["jump_hi"], row["inside"]) == (0.08, 0.09, True)
    top = curves.filter(pl.col("rank") == 1)
    at = dict(zip(top["prefix_chars"], top["p_same"], strict=False))
    assert at[8] == 0.75 and at[9] == 1.0


def test_form_of_three_options() -> None:
    form = forms.make_form("x", ["A (cat/dog/emu) ran.", "It was (Big/Small)."], PREFILL)
    assert form.user_message().splitlines()[1] == "1. A (cat/dog/emu) ran."
    assert len(form.choice_lists()) == 6
    assert len({form.answer(c)[0] for c in form.choice_lists()}) == 6
    assert form.choices_of(form.answer((2, 1))[0]) == [2, 1]
    with pytest.raises(ValueError, match=r"blanks\[1\].*same character"):
        forms.make_form("x", ["A (cat/dog) ran.", "B (cow/cat/emu)."], PREFILL)
    with pytest.raises(ValueError, match=r"blanks\[0\].*two or more options"):
        forms.make_form("x", ["A (cat) ran."], PREFILL)


def test_renormalise_is_the_samplers_temperature_and_top_p() -> None:
    lp = np.log([0.5, 0.3, 0.2])
    renorm = constrained.renormalise
    assert renorm(lp, 1.0, 1.0) == pytest.approx([0.5, 0.3, 0.2])
    assert renorm(lp + 7.0, 0.5, 1.0) == pytest.approx(np.array([25, 9, 4]) / 38)
    # top-p drops the least likely while their running sum stays <= 1 - top_p
    assert renorm(lp, 1.0, 0.75) == pytest.approx([0.5 / 0.8, 0.3 / 0.8, 0.0])
    assert renorm(lp, 1.0, 0.5) == pytest.approx([1.0, 0.0, 0.0])
    assert renorm(lp[::-1], 0.0, 1.0) == pytest.approx([0.0, 0.0, 1.0])


def test_chi_square_p_values() -> None:
    assert constrained.chi_square([50, 50], [0.5, 0.5])["p_value"] == pytest.approx(1.0)
    test = constrained.chi_square([60, 40], [0.5, 0.5])
    assert (test["chi2"], test["dof"]) == (pytest.approx(4.0), 1)
    assert test["p_value"] == pytest.approx(0.0455003, abs=1e-6)
    # the 5% critical values of chi-square with 10 and 29 degrees of freedom
    for dof, x in ((10, 18.307038), (29, 42.556968), (3, 7.814728)):
        assert constrained._upper_gamma(dof / 2, x / 2) == pytest.approx(0.05, abs=1e-6)
    # small cells pooled; a sample where the probability is 0 fails outright
    pooled = constrained.chi_square([90, 5, 3, 2], [0.9, 0.05, 0.03, 0.02])
    assert (pooled["cells"], pooled["chi2"]) == (3, pytest.approx(0.0))
    assert constrained.chi_square([9, 1], [1.0, 0.0])["p_value"] == 0.0


@pytest.fixture(scope="module")
def synth(form) -> constrained.FormModel:
    return constrained.FormModel(form)


def _prompt(model, form) -> list[int]:
    return prompts.render(
        model.tokenizer, [{"role": "user", "content": form.user_message()}], form.prefill
    )


def test_trie_of_the_synthetic_form(synth, form) -> None:
    trie = synth.trie
    assert len(trie.paths) == 32 and len(set(trie.strings)) == 32
    assert all(trie.branching(p) == 5 for p in trie.paths)
    assert trie.allowed[()] == (trie.paths[0][0],)  # the prefill's continuation is forced
    assert all(trie.allowed[p] == trie.stop for p in trie.paths)
    for c, s, path in zip(trie.choices, trie.strings, trie.paths, strict=True):
        assert s == form.answer(c)[0] and form.prefill + synth.tokenizer.decode(path) == s


def test_exact_probabilities_match_the_closed_form(synth, form) -> None:
    """Teacher forcing through the synthetic model's tokens gives the closed form."""
    trie = synth.trie
    logprobs = constrained.score_paths(synth, _prompt(synth, form), trie.paths)
    for temperature, top_p in ((1.0, 1.0), (0.6, 0.9), (0.7, 0.5), (0.0, 1.0)):
        exact = constrained.exact_probabilities(trie, logprobs, temperature, top_p)
        closed = synth.closed_form(temperature, top_p)
        assert exact.sum() == pytest.approx(1.0, abs=1e-12)
        assert exact == pytest.approx([closed[s] for s in trie.strings], abs=1e-12)
    assert (exact == 1.0).sum() == 1  # greedy: one string


def test_exact_curves_and_bounds_on_the_synthetic_model(synth, form) -> None:
    trie = synth.trie
    logprobs = constrained.score_paths(synth, _prompt(synth, form), trie.paths)
    exact = constrained.exact_table(trie, form, logprobs, [0.0] * 32, 1.0, 1.0)
    assert exact["rank"].to_list() == list(range(1, 33))
    assert exact["p_exact"].sum() == pytest.approx(1.0, abs=1e-12)
    closed = synth.closed_form(1.0, 1.0)
    assert dict(zip(exact["string"], exact["p_exact"], strict=True)) == pytest.approx(closed)
    curves, blanks = constrained.exact_curves(exact, form, 0.01)
    assert curves.height == 32 * 101 and blanks.height == 32 * 5
    assert blanks["inside"].all()  # every alternative has mass: five jumps, all inside
    top = curves.filter(pl.col("rank") == 1)
    values = top["p_same"].to_list()
    assert values[0] == pytest.approx(exact["p_exact"][0]) and values[-1] == pytest.approx(1.0)
    assert all(b >= a - 1e-15 for a, b in zip(values, values[1:], strict=False))
    # between blank 1's window and blank 2's, P(s | prefix) = P(s) / P(same first choice)
    b = blanks.filter(pl.col("rank") == 1).sort("blank")
    mid = (b["t_upper"][0] + b["t_lower"][1]) / 2
    s = exact["string"][0]
    c1 = exact["choices"][0][0]
    same = exact.filter(pl.col("choices").list.first() == c1)["p_exact"].sum()
    at = top.filter((pl.col("grid") - mid).abs() < 0.006)["p_same"][0]
    assert at == pytest.approx(closed[s] / same)


def test_constrained_samples_agree_with_the_exact_probabilities(synth, form, tmp_path) -> None:
    """Chi-square at a fixed seed and sample size; the same samples reject a wrong law."""
    from critical_windows.engine.journal import Journal

    drawn, exact, trie = constrained.run_exact(
        synth,
        Journal(tmp_path / "journal"),
        form,
        samples=2000,
        samples_per_request=500,
        sampling=Sampling(1.0, 1.0),
        seed=11,
        context="test",
    )
    assert drawn.height == 2000 and drawn["conforming"].all()
    assert (drawn["finish_reason"] == "stop").all()
    check = constrained.agreement(drawn, exact)
    assert check["exact_sum"] == pytest.approx(1.0, abs=1e-12)
    assert check["chi2_p_value"] > 0.01 and check["chi2_dof"] >= 20
    wrong = exact.with_columns(
        p_exact=pl.Series(
            constrained.exact_probabilities(
                trie,
                constrained.score_paths(synth, _prompt(synth, form), trie.paths),
                0.5,
                1.0,
            )[[trie.strings.index(s) for s in exact["string"]]]
        )
    )
    assert constrained.agreement(drawn, wrong)["chi2_p_value"] < 1e-6
    # unconstrained, the model slips off the form: 2% a token, 45 tokens with the end
    (free,) = synth.generate([_prompt(synth, form)], [Sampling(1.0, 1.0, 64, 400, 5)])
    unconstrained = _samples(form, [c.text for c in free])
    out = constrained.compare(unconstrained, drawn, exact, form, 0.01)
    summary = out["summary"].row(0, named=True)
    assert summary["unconstrained_samples"] == 400
    assert summary["broken_share_lo"] <= 1 - 0.98**45 <= summary["broken_share_hi"]
    assert summary["exact_inside_share"] == 1.0 and summary["sampled_inside_share"] == 1.0
    bounds = out["bounds"]
    assert bounds.height == 32 * 5 and bounds["sampled_count"].sum() == 2000 * 5
    sampled = out["curves"].filter(pl.col("rank") == 1)
    assert (sampled["wilson_lo"] <= sampled["p_same"]).all()
    assert (sampled["p_same"] <= sampled["wilson_hi"]).all()


def test_figure_of_exact_and_sampled_curves(synth, form, tmp_path) -> None:
    from critical_windows.engine.journal import Journal

    drawn, exact, _ = constrained.run_exact(
        synth,
        Journal(tmp_path / "j"),
        form,
        samples=200,
        samples_per_request=200,
        sampling=Sampling(1.0, 1.0),
        seed=3,
        context="fig",
    )
    out = constrained.compare(drawn, drawn, exact, form, 0.01)
    args = (out["curves"], out["exact_curves"], out["bounds"])
    constrained.render_comparison(1, *args, tmp_path / "1.html", tmp_path / "1.png")
    html = (tmp_path / "1.html").read_text()
    first = exact["choices"][0].to_list()
    assert "wilson_lo" in html and all(f'"{word}"' in html for word in first)
    assert (tmp_path / "1.png").read_bytes()[:4] == b"\x89PNG"
    constrained.render_comparison(99, *args, tmp_path / "9.html", tmp_path / "9.png")
    assert "no string of rank 99" in (tmp_path / "9.html").read_text()


@pytest.mark.slow
def test_small_real_run(tmp_path: Path, embedded_model: Path) -> None:
    """The embedded model end to end, with vLLM: unconstrained samples, the 32 exact
    probabilities (summing to 1), constrained samples that agree with them (chi-square),
    then the same exact probabilities from transformers' logits and its constrained
    sampler."""
    config = {
        "experiments": ["structured"],
        "models": {"smollm2": {"path": "embedded"}},
        "datasets": ["arc_easy"],
        "engine": {"dtype": "float32", "max_model_len": 1024, "cpu_kv_cache_gib": 1},
        "sampling": {"temperature": 1.0, "top_p": 1.0, "max_tokens": 512},
        "structured": {
            "samples": 12,
            "constrained_samples": 150,
            "samples_per_request": 75,
            "max_tokens": 40,
            "strings_drawn": 2,
        },
    }
    work = make_workdir(tmp_path, config, embedded_model)
    snakemake(work)
    out = work / "results/structured/smollm2"
    samples = tables.read_table(out / "samples.parquet", tables.STRUCTURED_SAMPLES)
    assert samples.height == 12 and samples["sample"].to_list() == list(range(12))
    assert (samples["n_tokens"] <= 40).all()
    assert set(samples["finish_reason"]) <= {"stop", "length"}
    form = forms.make_form(**{k: structured_default(k) for k in ("prompt", "blanks", "prefill")})
    for r in samples.iter_rows(named=True):
        assert r["conforming"] == (form.choices_of(form.prefill + r["text"]) is not None)
    conformance = pl.read_csv(out / "conformance.csv").row(0, named=True)
    assert conformance["samples"] == 12
    assert conformance["conforming"] == samples["conforming"].sum()
    exact = tables.read_table(out / "exact.parquet", tables.STRUCTURED_EXACT)
    assert exact.height == 32 and exact["p_exact"].sum() == pytest.approx(1.0, abs=1e-9)
    assert (exact["branching_tokens"] == 5).all() and (exact["p_model"] <= 1).all()
    drawn = tables.read_table(out / "constrained.parquet", tables.STRUCTURED_SAMPLES)
    assert drawn.height == 150 and drawn["conforming"].all()
    summary = pl.read_csv(out / "summary.csv").row(0, named=True)
    assert summary["constrained_samples"] == 150 and summary["unconstrained_samples"] == 12
    assert summary["exact_sum"] == pytest.approx(1.0, abs=1e-9)
    assert summary["chi2_dof"] >= 1 and summary["chi2_p_value"] > 0.001
    bounds = tables.read_table(out / "blanks.parquet", tables.STRUCTURED_BOUNDS)
    assert bounds.height == 32 * 5
    assert (out / "blanks.csv").read_text().startswith(",".join(tables.STRUCTURED_BOUNDS.names))
    assert bounds["exact_inside"].drop_nulls().all() and bounds["sampled_inside"].drop_nulls().all()
    for rank in (1, 2):
        assert (out / f"figures/string_{rank}.png").read_bytes()[:4] == b"\x89PNG"
    assert not (work / "results/smollm2").exists()  # the chain-of-thought stages did not run

    # transformers: the same 32 exact probabilities from its logits, and its sampler
    model_dir = str(work / "results/models/embedded")
    hf = constrained.load_engine(model_dir, None, "transformers", config["engine"], form)
    trie = constrained.build_trie(form, hf.tokenizer, constrained.stop_ids(hf))
    prompt = _prompt(hf, form)
    logprobs = constrained.score_paths(hf, prompt, trie.paths)
    p_hf = dict(
        zip(
            trie.strings,
            constrained.exact_probabilities(trie, logprobs, 1.0, 1.0),
            strict=True,
        )
    )
    p_vllm = dict(zip(exact["string"], exact["p_exact"], strict=True))
    assert p_hf == pytest.approx(p_vllm, abs=2e-3)
    drawn = constrained.sample_constrained(hf, prompt, trie, Sampling(1.0, 1.0, n=8, seed=1))
    assert all(form.choices_of(form.prefill + c.text) is not None for c in drawn)
    assert all(c.finish_reason == "stop" for c in drawn)


def structured_default(key: str):
    """A default of the config schema's `structured` block."""
    import yaml

    schema = yaml.safe_load(
        (Path(__file__).resolve().parents[1] / "workflow/schemas/config.schema.yaml").read_text()
    )
    return schema["properties"]["structured"]["properties"][key]["default"]
