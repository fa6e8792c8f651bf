"""The model stages of METHOD.md §2, steps 1-6: base responses, truncation, resampling
and answer elicitation. Pure functions of tables plus a backend; cot.runner does the I/O.

Every model stage runs as one job per (model, shard) over all datasets, so that an
engine starts once per stage. Requests go through the journal, so a killed job resumes.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from fractions import Fraction
from typing import Any

import polars as pl

from critical_windows.cot import readout
from critical_windows.engine.journal import Journal, request_key
from critical_windows.engine.journal import context as journal_context
from critical_windows.engine.server import PartialBatch
from critical_windows.engine.types import Backend, Completion, EngineSettings, Sampling
from critical_windows.io import tables

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Request:
    key: str
    prompt: tuple[int, ...]
    sampling: Sampling


@dataclass(frozen=True)
class StageSettings:
    """What a model stage needs from the config, passed in as Snakemake params."""

    model: str  # short name
    model_path: str
    revision: str | None
    backend: str
    engine: EngineSettings
    temperature: float
    top_p: float
    max_tokens: int
    seed: int
    samples_per_level: int
    elicitation_max_tokens: int
    code: str  # digest of the library code the stage runs
    batch_size: int = 64
    sampling_strategy: str = "fixed"  # "fixed" | "adaptive" (critical_windows.cot.adaptive)
    adaptive: Mapping[str, Any] | None = None  # the config's `adaptive` block, `jump` and `drop`
    cuts: Mapping[str, Any] | None = None  # adaptive with unit cuts: the config's `cuts` block
    elicitation: str = "followup"  # "followup" | "forced" (critical_windows.cot.readout)
    answer_readout: str = "greedy"  # "greedy" | "logprobs"
    reasoning: str = "auto"  # "auto" | "on" | "off": the model's thinking format
    server: Mapping[str, Any] | None = None  # backend "openai": the config's `server` block
    served_model: str | None = None  # backend "openai": the model name on the server

    def metadata(self) -> dict[str, Any]:
        meta = asdict(self)
        meta.pop("batch_size")
        meta["engine"] = asdict(self.engine)
        return meta


def derive_seed(seed: int, *parts: object) -> int:
    """A per-request seed: the same request gets the same seed on every machine."""
    digest = hashlib.sha256(repr((seed, *parts)).encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def in_shard(question_id: str, shard: int, shards: int) -> bool:
    """Questions are spread over shards by a digest of their id."""
    digest = hashlib.sha256(question_id.encode()).digest()
    return int.from_bytes(digest[:4], "big") % shards == shard


def cut_length(level: float, n_tokens: int) -> int:
    """floor(f * L), exact for decimal fractions such as 0.3 (0.3 * 10 is 3, not 2.99...)."""
    return math.floor(Fraction(repr(level)) * n_tokens)


class Generator:
    """Runs requests through a backend, reusing and extending the journal."""

    def __init__(self, backend: Backend, journal: Journal, settings: StageSettings):
        self.backend = backend
        self.journal = journal
        self.settings = settings
        # Not the code digest: output depends on model, backend, prompt and sampling only.
        self.context = journal_context(settings.model_path, settings.revision, backend)

    @property
    def tokenizer(self) -> Any:
        return self.backend.tokenizer

    @property
    def prompter(self) -> readout.Prompter:
        """The prompts of this model and readout (critical_windows.cot.readout)."""
        if getattr(self, "_prompter", None) is None:
            s = self.settings
            self._prompter = readout.Prompter(
                self.tokenizer,
                s.model_path,
                readout.ReadoutSettings(s.elicitation, s.answer_readout, s.reasoning),
            )
        return self._prompter

    def request(self, prompt: Sequence[int], sampling: Sampling, what: str) -> Request:
        room = self.backend.max_model_len - len(prompt)
        if room < 1:
            raise ValueError(
                f"{what}: the prompt has {len(prompt)} tokens, no room left under "
                f"engine.max_model_len={self.backend.max_model_len}; raise it in the config"
            )
        if sampling.max_tokens > room:
            sampling = Sampling(**{**asdict(sampling), "max_tokens": room})
        prompt = tuple(prompt)
        return Request(request_key(self.context, prompt, sampling), prompt, sampling)

    def run(self, requests: Sequence[Request], label: str) -> dict[str, list[Completion]]:
        unique = {r.key: r for r in requests}
        results = self.journal.load(unique)
        # An entry without its n samples is not a finished request (e.g. journaled by a
        # build whose stream kept only the last sample): generate it again.
        results = {k: cs for k, cs in results.items() if len(cs) == unique[k].sampling.n}
        todo = [r for k, r in unique.items() if k not in results]
        log.info(
            "%s: %d requests, %d already journaled, %d to generate",
            label,
            len(unique),
            len(results),
            len(todo),
        )
        if todo and hasattr(self.backend, "stream"):
            results.update(self._stream(todo, label))
            return results
        start, tokens, samples = time.monotonic(), 0, 0
        size = self.settings.batch_size
        for i in range(0, len(todo), size):
            batch = todo[i : i + size]
            try:
                outs = self.backend.generate([r.prompt for r in batch], [r.sampling for r in batch])
            except PartialBatch as err:  # a server failed part-way: keep what finished
                self.journal.append({batch[j].key: out for j, out in err.done.items()})
                raise
            done = {r.key: out for r, out in zip(batch, outs, strict=True)}
            self.journal.append(done)
            results.update(done)
            samples += sum(len(o) for o in outs)
            tokens += sum(len(c.token_ids) for o in outs for c in o)
            elapsed = time.monotonic() - start
            log.info(
                "%s: %d/%d requests, %d samples, %d tokens, %.1f tokens/s",
                label,
                i + len(batch),
                len(todo),
                samples,
                tokens,
                tokens / elapsed if elapsed else 0.0,
            )
        return results

    def _stream(self, todo: Sequence[Request], label: str) -> dict[str, list[Completion]]:
        """`todo` through the backend's stream: `batch_size` requests in flight, topped up
        as each finishes, and finished ones journaled every JOURNAL_EVERY_S seconds, so
        that a kill loses those in flight and at most that much finished work. Requests go
        in the order of their prompts, so that prompts sharing a start run together and
        the prefix cache serves it (reported as the stage's cache hit rate)."""
        order = sorted(todo, key=lambda r: r.prompt)
        done: dict[str, list[Completion]] = {}
        pending: dict[str, list[Completion]] = {}
        start = flushed = time.monotonic()
        tokens = prompt_tokens = cached = 0
        try:
            for fin in self.backend.stream(  # type: ignore[attr-defined]
                [r.prompt for r in order], [r.sampling for r in order], self.settings.batch_size
            ):
                key = order[fin.index].key
                done[key] = pending[key] = fin.completions
                tokens += sum(len(c.token_ids) for c in fin.completions)
                prompt_tokens += fin.prompt_tokens
                cached += fin.cached_tokens
                now = time.monotonic()
                if now - flushed >= JOURNAL_EVERY_S or len(done) == len(order):
                    self.journal.append(pending)
                    pending, flushed = {}, now
                    log.info(
                        "%s: %d/%d requests, %d tokens, %.1f tokens/s; prefix cache %d of %d "
                        "prompt tokens (%.0f%%)",
                        label,
                        len(done),
                        len(order),
                        tokens,
                        tokens / (now - start) if now > start else 0.0,
                        cached,
                        prompt_tokens,
                        100 * cached / prompt_tokens if prompt_tokens else 0.0,
                    )
        finally:  # a failed request (PartialBatch) or a kill: keep what finished
            self.journal.append(pending)
        return done


# Finished requests of a streamed stage are journaled at least this often.
JOURNAL_EVERY_S = 2.0


def generate_base(gen: Generator, questions: pl.DataFrame) -> pl.DataFrame:
    """One sampled chain-of-thought response per question, and the direct answer."""
    s = gen.settings
    rows = questions.select("question_id", "problem", "task", "answer_type").to_dicts()
    cot, direct = [], []
    for q in rows:
        qid = q["question_id"]
        cot.append(
            gen.request(
                gen.prompter.generation_prompt(q["problem"], q["task"]),
                Sampling(s.temperature, s.top_p, s.max_tokens, 1, derive_seed(s.seed, qid, "base")),
                f"question {qid}",
            )
        )
        direct.append(
            gen.request(
                gen.prompter.direct_prompt(q["problem"], q["task"], q["answer_type"]),
                Sampling(0.0, 1.0, s.elicitation_max_tokens),
                f"question {qid} (direct)",
            )
        )
    done = gen.run(cot + direct, "generate_base")
    out = []
    for q, c, d in zip(rows, cot, direct, strict=True):
        (resp,), (ans,) = done[c.key], done[d.key]
        out.append(
            {
                "question_id": q["question_id"],
                "prompt_token_ids": list(c.prompt),
                "response_token_ids": list(resp.token_ids),
                "response_text": gen.tokenizer.decode(resp.token_ids, skip_special_tokens=True),
                "n_response_tokens": len(resp.token_ids),
                "finish_reason": resp.finish_reason,
                "direct_text": ans.text,
                "n_direct_tokens": len(ans.token_ids),
                "direct_finish_reason": ans.finish_reason,
            }
        )
    return tables.frame(out, tables.BASE)


def truncate_responses(
    base: pl.DataFrame,
    levels: Sequence[float],
    tokenizer: Any,
    cuts: Mapping[str, Any] | None = None,
    reasoning: str | None = None,
) -> pl.DataFrame:
    """For every level f, the first floor(f * L) response tokens and where they end in text.

    With a `cuts` block (the config's) whose unit is "sentence" or "step", the cuts fall at
    the starts of the response's units instead (critical_windows.cot.segmentation). With
    `reasoning` (the config's key) and a model with a thinking format, L counts the
    reasoning tokens only (readout.reasoning_length): the answer after it is what orig is.
    """
    fmt = None if reasoning is None else readout.detect_thinking(tokenizer, "", reasoning)
    if cuts is not None and cuts.get("unit", "fraction") != "fraction":
        from critical_windows.cot import segmentation

        settings = segmentation.CutSettings.from_mapping(cuts)
        return segmentation.truncate_at_units(base, tokenizer, settings)
    out = []
    for b in base.select("question_id", "response_token_ids", "response_text").to_dicts():
        ids, text = b["response_token_ids"], b["response_text"]
        n = readout.reasoning_length(ids, tokenizer, fmt)
        for level in sorted(levels):
            k = cut_length(level, n)
            prefix = tokenizer.decode(ids[:k], skip_special_tokens=True)
            out.append(
                {
                    "question_id": b["question_id"],
                    "level": level,
                    "n_response_tokens": len(ids),
                    "cut_tokens": k,
                    "prefix_token_ids": ids[:k],
                    "prefix_text": prefix,
                    "char_offset": _common_prefix(prefix, text),
                }
            )
    return tables.frame(out, tables.TRUNCATED)


def _common_prefix(a: str, b: str) -> int:
    """Length of the common start of two strings: the cut's offset in the response text
    (a cut inside a multi-byte character decodes to a replacement character)."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def resample_prefixes(gen: Generator, base: pl.DataFrame, truncated: pl.DataFrame) -> pl.DataFrame:
    """M continuations of every prefix, with the base sampling settings."""
    s = gen.settings
    prompt_of = dict(
        zip(base["question_id"].to_list(), base["prompt_token_ids"].to_list(), strict=True)
    )
    rows = truncated.select("question_id", "level", "prefix_token_ids").to_dicts()
    reqs = [
        gen.request(
            prompt_of[t["question_id"]] + t["prefix_token_ids"],
            Sampling(
                s.temperature,
                s.top_p,
                s.max_tokens,
                s.samples_per_level,
                derive_seed(s.seed, t["question_id"], t["level"], "resample"),
            ),
            f"question {t['question_id']} level {t['level']}",
        )
        for t in rows
    ]
    done = gen.run(reqs, "resample_prefixes")
    out = []
    for t, r in zip(rows, reqs, strict=True):
        for i, c in enumerate(done[r.key]):
            out.append(
                {
                    "question_id": t["question_id"],
                    "level": t["level"],
                    "sample": i,
                    "token_ids": list(c.token_ids),
                    "text": c.text,
                    "n_tokens": len(c.token_ids),
                    "finish_reason": c.finish_reason,
                    "chosen_by": "grid",
                }
            )
    return tables.frame(out, tables.RESAMPLED)


def elicit_answers(
    gen: Generator,
    questions: pl.DataFrame,
    base: pl.DataFrame,
    truncated: pl.DataFrame,
    resampled: pl.DataFrame,
) -> pl.DataFrame:
    """Greedy answers for orig, every stump and every resample, read the way the config's
    `elicitation` and `answer_readout` say (critical_windows.cot.readout); the direct-answer
    baseline is carried over from the base table."""
    s = gen.settings
    tok = gen.tokenizer
    prompter = gen.prompter
    forced = s.elicitation == "forced"
    logprobs = s.answer_readout == "logprobs"
    cued = forced or logprobs  # the answer turn starts with the answer cue
    q_of = {q["question_id"]: q for q in questions.to_dicts()}
    prompt_of = {b["question_id"]: b["prompt_token_ids"] for b in base.to_dicts()}
    prefix_of = {
        (t["question_id"], t["level"]): t["prefix_token_ids"]
        for t in truncated.select("question_id", "level", "prefix_token_ids").to_dicts()
    }
    items: list[tuple[dict[str, Any], Request]] = []

    def sampling(q: dict[str, Any]) -> Sampling:
        letters = q["answer_type"] == "multiple_choice"
        most = s.elicitation_max_tokens
        if cued and letters:
            most = min(most, readout.FORCED_LETTER_TOKENS)
        if not logprobs:
            return Sampling(0.0, 1.0, most)
        if letters:
            ids = tuple(prompter.letter_ids(len(q["choices"])))
            return Sampling(0.0, 1.0, most, logprobs=0, logprob_token_ids=ids)
        return Sampling(0.0, 1.0, most, logprobs=0)

    def add(
        qid: str, kind: str, level: Any, sample: Any, finish: Any, text: str, ids: list[int]
    ) -> None:
        q = q_of[qid]
        if forced:
            prompt = prompter.forced_prompt(prompt_of[qid], ids, q["answer_type"])
        else:
            prompt = prompter.followup_prompt(
                q["problem"], q["task"], q["answer_type"], text, cue=cued
            )
        what = f"question {qid} {kind} level {level} sample {sample}"
        row = {
            "question_id": qid,
            "kind": kind,
            "level": level,
            "sample": sample,
            "source_finish_reason": finish,
        }
        items.append((row, gen.request(prompt, sampling(q), what)))

    for b in base.to_dicts():
        add(
            b["question_id"],
            "orig",
            None,
            None,
            b["finish_reason"],
            b["response_text"],
            b["response_token_ids"],
        )
    for t in truncated.select("question_id", "level", "prefix_text", "prefix_token_ids").to_dicts():
        qid, level = t["question_id"], t["level"]
        add(qid, "stump", level, None, None, t["prefix_text"], t["prefix_token_ids"])
    for r in resampled.select(
        "question_id", "level", "sample", "token_ids", "finish_reason"
    ).iter_rows(named=True):
        ids = prefix_of[(r["question_id"], r["level"])] + r["token_ids"]
        text = tok.decode(ids, skip_special_tokens=True)
        add(r["question_id"], "resample", r["level"], r["sample"], r["finish_reason"], text, ids)
    done = gen.run([req for _, req in items], "elicit_answers")
    out = []
    for row, req in items:
        (ans,) = done[req.key]
        q = q_of[row["question_id"]]
        text = prompter.answer_text(q["answer_type"], ans.text) if cued else ans.text
        extra: dict[str, Any] = {}
        if logprobs:
            extra = _readout_columns(ans, req.sampling)
        out.append(
            {
                **row,
                "answer_text": text,
                "n_answer_tokens": len(ans.token_ids),
                "answer_finish_reason": ans.finish_reason,
                **extra,
            }
        )
    for b in base.to_dicts():
        out.append(
            {
                "question_id": b["question_id"],
                "kind": "direct",
                "level": None,
                "sample": None,
                "source_finish_reason": None,
                "answer_text": b["direct_text"],
                "n_answer_tokens": b["n_direct_tokens"],
                "answer_finish_reason": b["direct_finish_reason"],
            }
        )
    return tables.frame(out, tables.ELICITED)


def _readout_columns(ans: Completion, sampling: Sampling) -> dict[str, Any]:
    """The logprob readout of one cued answer: the distribution over the question's letters
    at the answer position (renormalised over them), and the greedy answer's sequence
    log-probability."""
    if ans.logprobs is None:
        raise RuntimeError("the backend returned no log-probabilities for a logprobs readout")
    chosen = [step.get(t) for t, step in zip(ans.token_ids, ans.logprobs, strict=False)]
    seq = float(sum(lp for lp in chosen if lp is not None)) if chosen else None
    probs = None
    if sampling.logprob_token_ids is not None:
        first = ans.logprobs[0] if ans.logprobs else None
        probs = readout.letter_distribution(first, sampling.logprob_token_ids)
    return {"answer_probs": probs, "answer_logprob": seq}
