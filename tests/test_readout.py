"""Elicitation modes, thinking formats and the logprob readout (critical_windows.cot.readout).

The chat templates of real models (tests/templates/, sources in its README) are rendered on
the embedded model's tokenizer.
"""

from __future__ import annotations

import math
from pathlib import Path

import polars as pl
import pytest

from critical_windows.analysis import distributions
from critical_windows.cot import prompts, readout
from critical_windows.cot.generation import _readout_columns
from critical_windows.engine import synthetic
from critical_windows.engine.types import Completion, Sampling
from critical_windows.experiments.synthetic import scorecard

TEMPLATES = Path(__file__).parent / "templates"
REASONING_TEMPLATES = ["qwen3", "deepseek-r1-distill-qwen"]
ALL_TEMPLATES = [*REASONING_TEMPLATES, "llama-3.1-instruct", "chatml", "embedded"]
PROBLEM = "Which gas do plants take in?\n(A) oxygen\n(B) carbon dioxide\n(C) helium\n(D) neon"
REASONING = "Plants photosynthesise, so they take in carbon dioxide and give off oxygen."


@pytest.fixture(scope="module")
def embedded_tokenizer(embedded_model: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(embedded_model)


def tokenizer_with(embedded_model: Path, template: str):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(embedded_model)
    if template != "embedded":
        tok.chat_template = (TEMPLATES / f"{template}.jinja").read_text()
    return tok


def response_of(prompter: readout.Prompter) -> str:
    """What a model writes after the prefill: reasoning, then (reasoning models) the close
    tag and the answer."""
    if prompter.thinking is not None:
        return f"{REASONING}\n</think>\n\nThe answer is (B)."
    return f"{REASONING} The answer is (B)."


@pytest.mark.slow
@pytest.mark.parametrize("template", ALL_TEMPLATES)
@pytest.mark.parametrize("mode", readout.ELICITATIONS)
def test_orig_elicitation_keeps_the_reasoning(embedded_model: Path, template: str, mode: str):
    tok = tokenizer_with(embedded_model, template)
    p = readout.Prompter(tok, template, readout.ReadoutSettings(elicitation=mode))
    assert (p.thinking is not None) == (template in REASONING_TEMPLATES)
    gen = p.generation_prompt(PROBLEM, "science")
    gen_text = tok.decode(gen)
    assert gen_text.endswith(prompts.PREFILL)
    if p.thinking is not None:  # the prefill is where the reasoning starts
        assert gen_text.endswith(f"<think>\n{prompts.PREFILL}")
    response = readout.encode(tok, response_of(p))
    if mode == "forced":
        ids = p.forced_prompt(gen, response, "multiple_choice")
        assert ids[: len(gen) + len(response)] == gen + response  # token-exact extension
        assert tok.decode(ids).endswith("The answer is (B).\n\nThe answer is (")
    else:
        ids = p.followup_prompt(PROBLEM, "science", "multiple_choice", tok.decode(response))
        assert prompts.ELICIT["multiple_choice"] in tok.decode(ids)
    assert REASONING in tok.decode(ids)


@pytest.mark.slow
@pytest.mark.parametrize("template", REASONING_TEMPLATES)
def test_reasoning_templates_drop_what_the_plain_render_loses(embedded_model: Path, template):
    """The bug the splice fixes: rendering the closed conversation through these templates
    drops the reasoning of the original response, not that of a truncated prefix."""
    tok = tokenizer_with(embedded_model, template)
    p = readout.Prompter(tok, template)
    orig = response_of(p)
    plain = tok.decode(
        prompts.render(tok, prompts.elicit_messages(PROBLEM, "science", "multiple_choice", orig))
    )
    assert REASONING not in plain
    spliced = tok.decode(p.followup_prompt(PROBLEM, "science", "multiple_choice", orig))
    assert REASONING in spliced
    # the follow-up answer itself does not open a new reasoning block
    assert spliced.rstrip().endswith("</think>")
    # a stump (no close tag yet) keeps its reasoning and gets its block closed
    stump = tok.decode(p.followup_prompt(PROBLEM, "science", "multiple_choice", REASONING[:30]))
    assert f"{REASONING[:30]}\n</think>" in stump


@pytest.mark.slow
@pytest.mark.parametrize("template", REASONING_TEMPLATES)
def test_forced_cue_closes_an_open_thinking_block(embedded_model: Path, template: str):
    tok = tokenizer_with(embedded_model, template)
    p = readout.Prompter(tok, template, readout.ReadoutSettings(elicitation="forced"))
    gen = p.generation_prompt(PROBLEM, "science")
    stump = readout.encode(tok, REASONING[:30])
    ids = p.forced_prompt(gen, stump, "math")
    assert ids[: len(gen) + len(stump)] == gen + stump
    assert tok.decode(ids).endswith(f"{REASONING[:30]}\n</think>\n\nThe answer is $\\boxed{{")


@pytest.mark.slow
def test_followup_mode_is_the_research_prompt_byte_for_byte(embedded_tokenizer):
    """Without a thinking format every prompt is the one prompts.render gives."""
    p = readout.Prompter(embedded_tokenizer, "embedded")
    assert p.thinking is None and not p.template_kwargs
    msgs = prompts.cot_messages(PROBLEM, "science")
    assert p.generation_prompt(PROBLEM, "science") == prompts.render(
        embedded_tokenizer, msgs, prompts.PREFILL
    )
    elicit = prompts.elicit_messages(PROBLEM, "science", "multiple_choice", REASONING)
    assert p.followup_prompt(PROBLEM, "science", "multiple_choice", REASONING) == (
        prompts.render(embedded_tokenizer, elicit)
    )
    direct = prompts.direct_messages(PROBLEM, "science", "multiple_choice")
    assert p.direct_prompt(PROBLEM, "science", "multiple_choice") == prompts.render(
        embedded_tokenizer, direct
    )


@pytest.mark.slow
def test_qwen3_reasoning_off_uses_its_switch(embedded_model: Path):
    tok = tokenizer_with(embedded_model, "qwen3")
    p = readout.Prompter(tok, "qwen3", readout.ReadoutSettings(reasoning="off"))
    assert p.thinking is None and p.template_kwargs == {"enable_thinking": False}
    assert tok.decode(p.generation_prompt(PROBLEM, "science")).endswith(
        f"<think>\n\n</think>\n\n{prompts.PREFILL}"
    )


@pytest.mark.slow
def test_bad_models_are_refused_naming_the_model_and_the_key(embedded_model: Path):
    tok = tokenizer_with(embedded_model, "embedded")
    with pytest.raises(ValueError, match="reasoning: auto or off"):
        readout.Prompter(tok, "mymodel", readout.ReadoutSettings(reasoning="on"))
    tok.chat_template = None
    with pytest.raises(ValueError, match="'mymodel' has no chat template"):
        readout.Prompter(tok, "mymodel")
    tok = tokenizer_with(embedded_model, "embedded")
    p = readout.Prompter(tok, "mymodel", readout.ReadoutSettings(answer_readout="logprobs"))
    p.check(["multiple_choice", "math"], 5)
    assert len(set(p.letter_ids(26))) == 26
    p.tokenizer = _SplitLetters(tok)
    with pytest.raises(ValueError, match="'A' is 2 tokens.*answer_readout: greedy"):
        p.check(["multiple_choice"], 4)


class _SplitLetters:
    """A tokenizer that spells letters in two tokens."""

    def __init__(self, tok):
        self.tok = tok
        self.decode = tok.decode

    def __call__(self, text, add_special_tokens=False):
        ids = self.tok(text, add_special_tokens=add_special_tokens)["input_ids"]
        return {"input_ids": ids * 2 if len(text) == 1 else ids}


def test_settings_refuse_unknown_values():
    with pytest.raises(ValueError, match="elicitation: 'inline'"):
        readout.ReadoutSettings(elicitation="inline")


def test_letter_distribution_sums_to_one_over_valid_letters():
    first = {10: math.log(0.5), 11: math.log(0.2), 12: -math.inf, 99: math.log(0.25)}
    probs = readout.letter_distribution(first, [10, 11, 12])
    assert probs == pytest.approx([0.5 / 0.7, 0.2 / 0.7, 0.0])
    assert sum(probs) == pytest.approx(1.0)
    assert readout.letter_distribution({99: 0.0}, [10, 11]) is None


def test_readout_columns_from_a_completion():
    c = Completion((10, 5), "B)", "stop", ({10: math.log(0.6), 11: math.log(0.3)}, {5: -0.5}))
    cols = _readout_columns(c, Sampling(0.0, 1.0, 4, logprobs=0, logprob_token_ids=(11, 10)))
    assert cols["answer_probs"] == pytest.approx([1 / 3, 2 / 3])
    assert cols["answer_logprob"] == pytest.approx(math.log(0.6) - 0.5)
    with pytest.raises(RuntimeError, match="no log-probabilities"):
        _readout_columns(Completion((1,), "x", "stop"), Sampling(0.0))


def test_synthetic_model_reads_its_posterior_at_the_cue():
    """Both readouts on the synthetic model: the cued letter is its greedy answer, and the
    letter distribution is its exact posterior given the prefix."""
    m = synthetic.load("synthetic")
    tok = m.tokenizer
    problems = [f"Question {i}?\n(A) a\n(B) b\n(C) c\n(D) d" for i in range(6)]
    for mode in readout.ELICITATIONS:
        p = readout.Prompter(tok, "synthetic", readout.ReadoutSettings(mode, "logprobs"))
        letters = tuple(p.letter_ids(4))
        lp = Sampling(0.0, 1.0, 4, logprobs=0, logprob_token_ids=letters)
        for problem in problems:
            gen = p.generation_prompt(problem, "science")
            (resp,) = m.generate([gen], [Sampling(0.6, 0.9, 200, 1, 3)])[0]
            exact = m.exact_curve(problem, resp.token_ids)
            for k in (0, len(resp.token_ids) // 2, len(resp.token_ids)):
                if mode == "forced":
                    ids = p.forced_prompt(gen, resp.token_ids[:k], "multiple_choice")
                else:
                    text = tok.decode(resp.token_ids[:k])
                    ids = p.followup_prompt(problem, "science", "multiple_choice", text, cue=True)
                (a,) = m.generate([ids], [lp])[0]
                probs = readout.letter_distribution(a.logprobs[0], letters)
                assert sum(probs) == pytest.approx(1.0)
                orig = m.generate([p.forced_prompt(gen, resp.token_ids, "multiple_choice")], [lp])[
                    0
                ][0].text[0]
                assert probs["ABCD".index(orig)] == pytest.approx(exact[k])
                greedy = m.generate([ids], [Sampling(0.0, 1.0, 4)])[0][0]
                assert greedy.text == a.text and greedy.logprobs is None


def test_distributions():
    p = distributions.from_counts(["A", "A", "B", None])
    assert p == {"A": 2 / 3, "B": 1 / 3}
    assert distributions.from_counts([None]) is None
    q = distributions.from_logprobs({"A": math.log(0.2), "B": math.log(0.6), "C": None})
    assert q == pytest.approx({"A": 0.25, "B": 0.75, "C": 0.0})
    assert distributions.tv(p, q) == pytest.approx(0.5 * (abs(2 / 3 - 0.25) + abs(1 / 3 - 0.75)))
    assert distributions.tv(p, p) == 0
    assert distributions.entropy({"A": 0.5, "B": 0.5}) == pytest.approx(math.log(2))
    assert distributions.kl(p, p) == pytest.approx(0.0)
    # an answer one side never gives: finite thanks to the smoothing, and large
    assert 3 < distributions.kl({"A": 1.0}, {"B": 1.0}) < 10
    assert distributions.mode(q) == "B" and distributions.prob(q, "C") == 0.0


def test_elicited_schema_has_the_readout_columns():
    from critical_windows.io import tables

    names = tables.ELICITED.names
    assert "answer_probs" in names and "answer_logprob" in names
    assert pl.from_arrow(tables.ELICITED.empty_table()).height == 0


@pytest.mark.slow
def test_forced_logprob_workflow_on_the_synthetic_model(tmp_path: Path) -> None:
    """Every stage with elicitation forced and answer_readout logprobs: the letter
    distributions sum to 1, the forced curve is the model's exact P(f), and the scorecard
    scores it as a screening curve against the planted windows."""
    from conftest import make_workdir, snakemake

    from critical_windows.io import tables

    config = {
        "models": {"synthetic": {"path": "synthetic"}},
        "datasets": ["arc_easy", "mmlu"],
        "questions_per_dataset": 8,
        "engine": {"max_model_len": 16384},
        "sampling": {"temperature": 0.6, "top_p": 0.9, "max_tokens": 128},
        "levels": [0.1, 0.5, 0.9],
        "samples_per_level": 10,
        "elicitation_max_tokens": 32,
        "batch_size": 512,
        "elicitation": "forced",
        "answer_readout": "logprobs",
    }
    work = make_workdir(tmp_path, config)
    snakemake(work, "results/synthetic/scorecard.csv")
    res = work / "results/synthetic"
    elicited = pl.concat(
        tables.read_table(res / f"{d}/elicited.parquet", tables.ELICITED)
        for d in config["datasets"]
    )
    read = elicited.filter(pl.col("kind") != "direct")
    assert read.height == 16 * (1 + 3 + 3 * 10)
    sums = read["answer_probs"].list.sum()
    assert ((sums - 1.0).abs() < 1e-9).all()
    assert read["answer_text"].str.starts_with("The answer is (").all()
    curves = pl.concat(
        tables.read_table(res / f"{d}/curves.parquet", tables.CURVES) for d in config["datasets"]
    )
    assert curves["n_missing"].sum() == 0
    levels = pl.concat(
        tables.read_table(res / f"{d}/distributions.parquet", tables.LEVEL_DISTRIBUTIONS)
        for d in config["datasets"]
    )
    truth = tables.read_table(res / "truth.parquet", tables.SYNTHETIC_TRUTH)
    exact = truth.select("question_id", "levels", "exact_p").explode("levels", "exact_p")
    joined = levels.join(exact.rename({"levels": "level"}), on=["question_id", "level"])
    assert joined.height == 16 * 4
    assert ((joined["p_orig_forced"] - joined["exact_p"]).abs() < 1e-9).all()
    # the sampled distribution at f = 1 is the original alone; entropies are non-negative
    assert (levels.filter(pl.col("level") == 1)["entropy"] == 0).all()
    assert (levels["entropy"].drop_nulls() >= 0).all()
    readout_w = pl.concat(
        tables.read_table(res / f"{d}/readout_windows.parquet", tables.READOUT_WINDOWS)
        for d in config["datasets"]
    )
    assert readout_w.height == 16 and (readout_w["n_forced_levels"] == 4).all()
    card = pl.read_csv(res / "scorecard.csv")
    forced = card.filter((pl.col("method") == "forced_rule") & (pl.col("population") == "all"))
    assert set(forced["truth"]) == set(scorecard.TRUTHS)
    planted = forced.filter(pl.col("truth") == "planted").row(0, named=True)
    assert planted["true_windows"] == truth["planted_token"].is_not_null().sum()
    assert planted["precision"] is not None or planted["detected"] == 0
    # the figures and the explorer draw the forced curve beside P(f)
    from critical_windows.views import explorer, figures

    windows = pl.concat(
        tables.read_table(res / f"{d}/windows.parquet", tables.WINDOWS) for d in config["datasets"]
    )
    both = figures.with_forced_curve(curves, levels)
    assert both.filter(pl.col("level") == 1)["p_orig_forced"].is_not_null().all()
    spec = str(figures.question_curves(both, windows).to_dict())
    assert "p_orig_forced" in spec
    questions = pl.concat(
        tables.read_table(work / f"results/datasets/{d}.parquet", tables.QUESTIONS)
        for d in config["datasets"]
    )
    base = pl.concat(
        tables.read_table(res / f"{d}/base.parquet", tables.BASE) for d in config["datasets"]
    )
    truncated = pl.concat(
        tables.read_table(res / f"{d}/truncated.parquet", tables.TRUNCATED)
        for d in config["datasets"]
    )
    recs = explorer.records(questions, base, truncated, curves, windows, levels=levels)
    assert all(len(r["forced"]) == 4 for r in recs)


@pytest.mark.slow
@pytest.mark.parametrize("single_token_tags", [False, True])
def test_cut_fractions_of_a_reasoning_model_count_reasoning_tokens(
    embedded_model: Path, single_token_tags: bool
):
    from critical_windows.cot.generation import truncate_responses

    tok = tokenizer_with(embedded_model, "qwen3")
    if single_token_tags:  # as in Qwen3's own vocabulary
        tok.add_tokens(["<think>", "</think>"])
    reasoning = readout.encode(tok, REASONING)
    response = reasoning + readout.encode(tok, "\n</think>\n\nThe answer is (B).")
    base = pl.DataFrame(
        {
            "question_id": ["q"],
            "response_token_ids": [response],
            "response_text": [tok.decode(response)],
        }
    )
    fmt = readout.detect_thinking(tok, "qwen3")
    n = readout.reasoning_length(response, tok, fmt)
    assert n in (len(reasoning), len(reasoning) + 1)  # "\n" may merge into the tag's token
    cut = truncate_responses(base, [0.5, 0.9], tok, reasoning="auto")
    assert cut["cut_tokens"].to_list() == [n // 2, math.floor(0.9 * n)]
    assert all("</think>" not in t for t in cut["prefix_text"])
    plain = truncate_responses(base, [0.9], tok)  # no reasoning key: the whole response
    assert plain["cut_tokens"].to_list() == [math.floor(0.9 * len(response))]


def test_responses_the_context_would_cut_are_refused():
    readout.check_config({"sampling": {"max_tokens": 2048}, "engine": {"max_model_len": 4096}})
    with pytest.raises(ValueError, match="sampling.max_tokens=32768.*engine.max_model_len=4096"):
        readout.check_config({"sampling": {"max_tokens": 32768}, "engine": {"max_model_len": 4096}})
    # the context only binds the chain-of-thought stages
    readout.check_config(
        {
            "experiments": ["prefill_attack"],
            "sampling": {"max_tokens": 2048},
            "engine": {"max_model_len": 2048},
        }
    )


def test_adaptive_sampling_refuses_other_readouts():
    base = {"sampling_strategy": "adaptive", "sampling": {}, "engine": {}}
    readout.check_config({**base, "elicitation": "followup", "answer_readout": "greedy"})
    with pytest.raises(ValueError, match="answer_readout: logprobs with sampling_strategy"):
        readout.check_config({**base, "answer_readout": "logprobs"})
    with pytest.raises(ValueError, match="elicitation: forced with sampling_strategy"):
        readout.check_config({**base, "elicitation": "forced"})


def test_sampling_comes_from_the_config_then_the_generation_config(tmp_path: Path):
    """A reasoning model's folder ships its tuned sampling (Qwen3: 0.6 / 0.95); the config
    wins where it sets a value; a model without one gets the protocol's 0.6 / 0.9."""
    model = tmp_path / "qwen3"
    model.mkdir()
    (model / "generation_config.json").write_text('{"temperature": 0.7, "top_p": 0.95}')
    unset = {"temperature": None, "top_p": None, "max_tokens": 64}
    assert readout.model_sampling(unset, str(model)) == {"temperature": 0.7, "top_p": 0.95}
    assert readout.model_sampling({**unset, "top_p": 0.5}, str(model)) == {
        "temperature": 0.7,
        "top_p": 0.5,
    }
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "generation_config.json").write_text('{"eos_token_id": 2}')
    assert readout.model_sampling(unset, str(tmp_path / "plain")) == readout.PROTOCOL_SAMPLING
    assert readout.model_sampling(unset, None) == readout.PROTOCOL_SAMPLING
    # a hub id that is not in the (offline) cache: nothing to read, the protocol's values
    assert readout.model_sampling(unset, "nobody/not-cached") == readout.PROTOCOL_SAMPLING
