"""The model stages: prompts, truncation and the journal with a fake backend; the real
backends against each other; and a real tiny run of the workflow, killed and resumed."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest
from conftest import SNAKEMAKE, TINY_CONFIG, make_workdir, snakemake

from critical_windows.cot import prompts
from critical_windows.cot.generation import (
    Generator,
    StageSettings,
    cut_length,
    derive_seed,
    in_shard,
    truncate_responses,
)
from critical_windows.engine.journal import Journal
from critical_windows.engine.types import Completion, EngineSettings, Sampling
from critical_windows.io import tables


def test_cut_length_is_exact_floor() -> None:
    assert cut_length(0.3, 10) == 3
    assert cut_length(0.29, 100) == 29  # 0.29 * 100 is 28.999999999999996 in floats
    assert cut_length(0.05, 19) == 0
    assert cut_length(0.9, 101) == 90


def test_seeds_and_shards_are_stable() -> None:
    # The value is pinned: a derived seed that changed would orphan every journaled request.
    assert derive_seed(2243, "math-0001", 0.3, "resample") == 1988202450
    assert derive_seed(2243, "math-0001", 0.3, "resample") != derive_seed(
        2243, "math-0001", 0.5, "resample"
    )
    ids = [f"mmlu-anatomy-{i:04d}" for i in range(200)]
    shards = [[q for q in ids if in_shard(q, s, 3)] for s in range(3)]
    assert sorted(sum(shards, [])) == ids
    assert all(30 < len(s) < 110 for s in shards)


class FakeBackend:
    """Echoes a fixed continuation; counts what it was asked for."""

    name = "fake"
    max_model_len = 1000

    def __init__(self, tokenizer) -> None:
        self.tokenizer = tokenizer
        self.calls: list[int] = []

    def generate(self, prompts_, params):
        self.calls.append(len(prompts_))
        return [
            [Completion((7, 8, 9), f"sample {i}", "length") for i in range(p.n)] for p in params
        ]


def _settings(**kw) -> StageSettings:
    base = dict(
        model="m",
        model_path="m",
        revision=None,
        backend="fake",
        engine=EngineSettings(),
        temperature=0.6,
        top_p=0.9,
        max_tokens=50,
        seed=1,
        samples_per_level=3,
        elicitation_max_tokens=10,
        code="c",
        batch_size=2,
    )
    return StageSettings(**{**base, **kw})


def test_journal_resumes_without_regenerating(tmp_path: Path) -> None:
    backend = FakeBackend(tokenizer=None)
    gen = Generator(backend, Journal(tmp_path), _settings())
    reqs = [gen.request([1, 2, i], Sampling(0.6, 0.9, 50, 3, i), f"r{i}") for i in range(5)]
    first = gen.run(reqs, "test")
    assert backend.calls == [2, 2, 1] and len(first) == 5
    again = Generator(FakeBackend(None), Journal(tmp_path), _settings())
    assert again.run(reqs, "test") == first
    assert again.backend.calls == []
    # A changed setting is a different request: nothing stale is reused.
    other = Generator(FakeBackend(None), Journal(tmp_path), _settings(revision="v2"))
    other.run([other.request([1, 2, 0], Sampling(0.6, 0.9, 50, 3, 0), "r0")], "test")
    assert other.backend.calls == [1]


def test_journal_keys_are_what_the_output_depends_on(tmp_path: Path) -> None:
    """The library's code digest is not in the key (a refactor regenerates nothing); the
    model, its revision, the backend and its version, the prompt and the sampling are."""

    def key(backend=None, prompt=(1, 2), sampling=None, **kw) -> str:
        gen = Generator(backend or FakeBackend(None), Journal(tmp_path), _settings(**kw))
        return gen.request(prompt, sampling or Sampling(0.6, 0.9, 50, 3, 0), "r").key

    versioned = FakeBackend(None)
    versioned.version = "fake==2"
    same = key()
    assert key(code="another digest") == same
    assert key(engine=EngineSettings(threads=7)) == same
    changed = [
        key(model_path="other"),
        key(revision="v2"),
        key(backend=versioned),
        key(prompt=(1, 3)),
        key(sampling=Sampling(0.6, 0.95, 50, 3, 0)),
        key(sampling=Sampling(0.6, 0.9, 50, 3, 1)),
    ]
    assert same not in changed and len(set(changed)) == len(changed)


class StreamingBackend(FakeBackend):
    """Finishes requests out of order, one by one, and dies after `die_after`."""

    def __init__(self, die_after: int | None = None) -> None:
        super().__init__(None)
        self.die_after = die_after
        self.in_flight: list[int] = []

    def stream(self, prompts_, params, in_flight):
        from critical_windows.engine.types import Finished

        self.in_flight.append(in_flight)
        for done, i in enumerate(reversed(range(len(prompts_)))):
            if done == self.die_after:
                raise RuntimeError("killed")
            last = prompts_[i][-1]
            comps = [Completion((last,), f"{last}", "stop") for _ in range(params[i].n)]
            yield Finished(i, comps, len(prompts_[i]), 1)


def test_streamed_requests_are_journaled_as_they_finish(tmp_path: Path, monkeypatch) -> None:
    """No batch barrier: the backend's stream gets every request with batch_size in
    flight, and what finished before a crash is in the journal, so a rerun generates only
    the rest."""
    from critical_windows.cot import generation

    monkeypatch.setattr(generation, "JOURNAL_EVERY_S", 0.0)
    dying = StreamingBackend(die_after=3)
    gen = Generator(dying, Journal(tmp_path), _settings())
    reqs = [gen.request([5, i], Sampling(0.6, 0.9, 50, 2, i), f"r{i}") for i in range(6)]
    with pytest.raises(RuntimeError, match="killed"):
        gen.run(reqs, "test")
    assert dying.in_flight == [2] and dying.calls == []
    assert len(Journal(tmp_path).load(r.key for r in reqs)) == 3
    rest = StreamingBackend()
    done = Generator(rest, Journal(tmp_path), _settings()).run(reqs, "test")
    assert {k: [c.token_ids for c in cs] for k, cs in done.items()} == {
        r.key: [(r.prompt[1],)] * 2 for r in reqs
    }


def test_request_is_capped_by_the_context(tmp_path: Path) -> None:
    gen = Generator(FakeBackend(None), Journal(tmp_path), _settings())
    req = gen.request(list(range(990)), Sampling(0.6, 0.9, 50), "long")
    assert req.sampling.max_tokens == 10
    with pytest.raises(ValueError, match="long: the prompt has 1000 tokens"):
        gen.request(list(range(1000)), Sampling(0.6, 0.9, 50), "long")


@pytest.fixture(scope="module")
def tokenizer(embedded_model: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(embedded_model)


def test_stage_tokenizer_is_autotokenizers_without_its_imports(tokenizer, embedded_model) -> None:
    from critical_windows.engine.registry import load_tokenizer

    fast = load_tokenizer(str(embedded_model))
    assert type(fast) is type(tokenizer)
    assert fast.get_vocab() == tokenizer.get_vocab()
    assert fast.all_special_ids == tokenizer.all_special_ids
    text = "Dr. Smith: $\\frac{1}{2}$ is 0.5 <|im_end|> naïve"
    assert fast(text)["input_ids"] == tokenizer(text)["input_ids"]
    chat = prompts.cot_messages("What is 2+2?", "math")
    assert prompts.render(fast, chat, prompts.PREFILL) == prompts.render(
        tokenizer, chat, prompts.PREFILL
    )
    # ... and a stage without an engine does not pay for torch.
    code = (
        "import sys; from critical_windows.engine.registry import load_tokenizer; "
        f"load_tokenizer({str(embedded_model)!r}); print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_materializing_leaves_gguf_as_it_was(embedded_model) -> None:
    import gguf

    # materialize_embedded caches gguf's reader and name map only while it runs.
    assert isinstance(gguf.GGUFReader, type)
    assert gguf.get_tensor_name_map.__module__ == "gguf.tensor_mapping"
    assert (embedded_model / "model.safetensors").is_file()


@pytest.mark.slow
def test_prompts_use_the_chat_template(tokenizer) -> None:
    ids = prompts.render(tokenizer, prompts.cot_messages("What is 2+2?", "math"), prompts.PREFILL)
    text = tokenizer.decode(ids)
    assert text.startswith(
        "<|im_start|>system\nProduce a correct solution to the following math question.<|im_end|>"
    )
    assert text.endswith("<|im_start|>assistant\nLet's think step by step: ")
    mc = tokenizer.decode(
        prompts.render(
            tokenizer,
            prompts.elicit_messages("Q?\n\n(A) x\n(B) y", "science", "multiple_choice", "so B"),
        )
    )
    assert "Let's think step by step: so B<|im_end|>" in mc
    assert 'format "The answer is ANSWER"' in mc and "LaTeX" not in mc
    math = tokenizer.decode(
        prompts.render(tokenizer, prompts.elicit_messages("1+1?", "math", "math", "2"))
    )
    assert "Simplify it completely" in math and 'format "The answer is $ANSWER$"' in math


@pytest.mark.slow
def test_truncation_on_real_tokens(tokenizer) -> None:
    text = "First, 12 * 3 = 36. Then 36 + 4 = 40. The answer is 40 — naïve but right."
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    base = pl.DataFrame(
        {"question_id": ["q"], "response_token_ids": [ids], "response_text": [text]}
    )
    t = truncate_responses(base, [0.9, 0.05, 0.5], tokenizer)
    assert t["level"].to_list() == [0.05, 0.5, 0.9]
    for row in t.to_dicts():
        assert row["cut_tokens"] == cut_length(row["level"], len(ids))
        assert row["prefix_token_ids"] == ids[: row["cut_tokens"]]
        assert text[: row["char_offset"]] == row["prefix_text"]


@pytest.mark.slow
def test_vllm_and_transformers_agree_on_greedy_tokens(embedded_model: Path) -> None:
    from critical_windows.engine.transformers_backend import TransformersBackend
    from critical_windows.engine.vllm_backend import VLLMBackend

    settings = EngineSettings(dtype="float32", max_model_len=1024, cpu_kv_cache_gib=1)
    hf = TransformersBackend(str(embedded_model), settings)
    questions = ["What is 17 * 3?", "Name the largest planet of the solar system."]
    ids = [
        prompts.render(hf.tokenizer, prompts.cot_messages(q, "science"), prompts.PREFILL)
        for q in questions
    ]
    greedy = [Sampling(0.0, 1.0, 40)] * len(ids)
    expected = hf.generate(ids, greedy)
    got = VLLMBackend(str(embedded_model), settings).generate(ids, greedy)
    for e, g in zip(expected, got, strict=True):
        assert g[0].token_ids == e[0].token_ids
        assert g[0].finish_reason == e[0].finish_reason


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory, embedded_model: Path) -> Path:
    """The tiny config through elicitation, with the resample stage killed once mid-way."""
    config = {**TINY_CONFIG, "batch_size": 2}
    work = make_workdir(tmp_path_factory.mktemp("tiny"), config, embedded_model)
    targets = [f"results/smollm2/{d}/truncated.parquet" for d in config["datasets"]]
    snakemake(work, *targets)
    journal = work / "results/smollm2/.journal/resample_prefixes"
    shard_outputs = [
        f"results/smollm2/shards/resampled/000/{d}.parquet" for d in config["datasets"]
    ]
    output = (work / "killed-run.log").open("w")
    proc = subprocess.Popen(
        [str(SNAKEMAKE), "--cores", "2", "--resources", "gpu=1", "--nolock", *shard_outputs],
        cwd=work,
        stdout=output,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 600
    while not list(journal.glob("*.parquet")):
        if proc.poll() is not None:
            raise AssertionError(
                "the resample stage ended before it could be killed:\n"
                + (work / "killed-run.log").read_text()[-3000:]
            )
        assert time.monotonic() < deadline, "no journal chunk after 10 minutes"
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not list((work / "results/smollm2/shards/resampled").rglob("*.parquet"))
    targets = [f"results/smollm2/{d}/elicited.parquet" for d in config["datasets"]]
    snakemake(work, "--rerun-incomplete", *targets)
    return work


@pytest.mark.slow
def test_resume_after_kill_keeps_finished_work(tiny_run: Path) -> None:
    log = (tiny_run / "results/logs/smollm2/resample_prefixes/000.log").read_text()
    found = re.search(r"resample_prefixes: (\d+) requests, (\d+) already journaled", log)
    assert found, log[-2000:]
    total, done = int(found[1]), int(found[2])
    assert 0 < done < total


def _load(work: Path, dataset: str, name: str, schema) -> pl.DataFrame:
    return tables.read_table(work / f"results/smollm2/{dataset}/{name}.parquet", schema)


@pytest.mark.slow
@pytest.mark.parametrize("dataset", TINY_CONFIG["datasets"])
def test_tiny_run_tables(tiny_run: Path, dataset: str) -> None:
    n_q, levels, m = 2, TINY_CONFIG["levels"], TINY_CONFIG["samples_per_level"]
    base = _load(tiny_run, dataset, "base", tables.BASE)
    trunc = _load(tiny_run, dataset, "truncated", tables.TRUNCATED)
    res = _load(tiny_run, dataset, "resampled", tables.RESAMPLED)
    eli = _load(tiny_run, dataset, "elicited", tables.ELICITED)
    assert base.height == n_q and set(base["finish_reason"]) <= {"stop", "length"}
    assert trunc.height == n_q * len(levels)
    assert res.height == n_q * len(levels) * m
    assert res.select("question_id", "level", "sample").is_duplicated().sum() == 0
    assert set(res["finish_reason"]) <= {"stop", "length"}
    assert (res["n_tokens"] <= TINY_CONFIG["sampling"]["max_tokens"]).all()
    ids = dict(
        zip(base["question_id"].to_list(), base["response_token_ids"].to_list(), strict=True)
    )
    for t in trunc.to_dicts():
        full = ids[t["question_id"]]
        assert t["cut_tokens"] == cut_length(t["level"], len(full))
        assert t["prefix_token_ids"] == full[: t["cut_tokens"]]
    counts = dict(eli.group_by("kind").len().iter_rows())
    assert counts == {
        "orig": n_q,
        "direct": n_q,
        "stump": n_q * len(levels),
        "resample": n_q * len(levels) * m,
    }
    answered_from_text = eli.filter(pl.col("kind").is_in(["orig", "resample"]))
    assert answered_from_text["source_finish_reason"].null_count() == 0
    assert set(eli["answer_finish_reason"]) <= {"stop", "length"}
    meta = tables.read_metadata(tiny_run / f"results/smollm2/{dataset}/resampled.parquet")
    assert (
        meta["seed"] == 2243 and meta["temperature"] == 0.6 and "critical_windows_version" in meta
    )


@pytest.mark.slow
def test_forced_elicitation_runs_in_the_resample_engine(tmp_path: Path) -> None:
    """With elicitation forced, resample_prefixes elicits every answer in its own engine
    (whose prefix cache holds the continuations the prompts extend), and elicit_answers
    finds all of them in the journal."""
    from conftest import make_workdir, snakemake

    config = {
        "models": {"synthetic": {"path": "synthetic"}},
        "datasets": ["arc_easy"],
        "questions_per_dataset": 3,
        "engine": {"max_model_len": 16384},
        "sampling": {"temperature": 0.6, "top_p": 0.9, "max_tokens": 64},
        "levels": [0.3, 0.7],
        "samples_per_level": 3,
        "elicitation_max_tokens": 16,
        "elicitation": "forced",
    }
    work = make_workdir(tmp_path, config)
    snakemake(work, "results/synthetic/arc_easy/elicited.parquet")
    logs = work / "results/logs/synthetic"
    fused = re.search(
        r"elicit_answers: (\d+) requests, 0 already journaled, (\d+) to generate",
        (logs / "resample_prefixes/000.log").read_text(),
    )
    assert fused and fused[1] == fused[2] and int(fused[1]) == 3 * (1 + 2 + 2 * 3), fused
    found = re.search(
        r"elicit_answers: (\d+) requests, (\d+) already journaled, 0 to generate",
        (logs / "elicit_answers/000.log").read_text(),
    )
    assert found and found[1] == found[2] == fused[1], found


def test_a_journal_entry_short_of_its_samples_is_generated_again(tmp_path: Path) -> None:
    backend = FakeBackend(tokenizer=None)
    gen = Generator(backend, Journal(tmp_path), _settings())
    req = gen.request([1, 2], Sampling(0.6, 0.9, 50, 2, 0), "r")
    Journal(tmp_path).append({req.key: [Completion((1,), "one", "stop")]})
    done = gen.run([req], "test")
    assert backend.calls == [1] and len(done[req.key]) == 2


def test_a_stage_with_every_request_journaled_starts_no_engine(
    tmp_path: Path, embedded_model: Path
) -> None:
    """The engine is loaded at the first request to compute (backends.LazyBackend): a
    rerun whose requests are all journaled writes the same table without one."""
    from conftest import ROOT

    from critical_windows.cot.runner import run_model_stage
    from critical_windows.data import benchmarks
    from critical_windows.engine.registry import load_tokenizer

    questions = benchmarks.prepare_bundled(
        ["arc_easy"], resources=ROOT / "resources/datasets", n=3, seed=2243
    )
    path = tmp_path / "questions.parquet"
    tables.write_table(questions, path, tables.QUESTIONS, {})
    settings = _settings(model_path=str(embedded_model))
    started: list[tuple] = []
    made: list[FakeBackend] = []

    def load(*args, **kw):
        started.append(args)
        made.append(FakeBackend(load_tokenizer(str(embedded_model))))
        return made[-1]

    def refuse(*args, **kw):
        raise AssertionError("an engine was started with nothing to compute")

    def stage(out: str, load) -> pl.DataFrame:
        run_model_stage(
            "generate_base",
            settings,
            {"questions": {"arc_easy": str(path)}},
            {"arc_easy": str(tmp_path / out)},
            shard=0,
            shards=1,
            journal_dir=tmp_path / "journal",
            load=load,
        )
        return tables.read_table(tmp_path / out, tables.BASE)

    first = stage("first.parquet", load)
    assert started == [("fake", str(embedded_model), settings.engine, None)]
    assert stage("again.parquet", refuse).equals(first)
    # One request short of the journal: the engine starts, once, for that request.
    import pyarrow.parquet as pq

    journal = Journal(tmp_path / "journal")
    chunks = sorted(journal.folder.glob("*.parquet"))
    keys = [k for c in chunks for k in pq.read_table(c, columns=["key"])["key"].to_pylist()]
    kept = journal.load(keys[1:])
    for chunk in chunks:
        chunk.unlink()
    journal.append(kept)
    assert stage("third.parquet", load).equals(first)
    assert len(started) == 2 and len(keys) == 2 * questions.height
    assert made[-1].calls == [1]


def test_a_cpu_block_size_vllm_cannot_serve_is_refused_by_name() -> None:
    for bad in (16, 48, 0, "32"):
        with pytest.raises(ValueError, match="engine.cpu_block_size"):
            EngineSettings(cpu_block_size=bad)
    assert EngineSettings(cpu_block_size=None).cpu_block_size is None
