"""A synthetic model whose critical windows are known exactly (METHOD.md §4).

`SyntheticModel` has the interface of the inference backends, so every stage of the
chain-of-thought workflow runs on it unchanged: it reads the same chat-templated prompts,
writes token ids and text, and answers the elicitation question greedily with
"The answer is (X)." so that the real grader extracts its answers.

Each question is assigned, from a digest of its text, one sub-population of a mixture.
Its response is a stream of filler words (a Markov chain over a few sentences, independent
of the answer) with *events* at fixed token positions that reveal information about the
final answer, a letter of the question's choices:

* ``pick``: states the answer (the token `` ⇒B``);
* ``narrow``: states which of two groups of letters the answer is in (`` ∈G1``);
* ``hint``: names the answer with probability `hint_accuracy`, else a uniformly random
  letter (`` ~B``).

The answer is drawn first from a prior over the letters, then every event from its
likelihood given the answer. Because an event's likelihood is the same for every letter
it keeps, the posterior over the answer after any prefix is the prior reweighted by the
events seen so far, and a continuation is sampled from exactly that conditional
process. So for every response the probability that a continuation from its first `k`
tokens ends with the same answer, the P(f) that the workflow estimates, is known exactly.

Sub-populations (``Spec.populations``):

* ``sharp``: one ``pick`` somewhere in the response: P jumps from the prior weight of the
  answer to 1 at that token;
* ``staged``: a ``narrow`` then a ``pick``: two rises, either of which can be a window;
* ``gradual``: several ``hint``s, then a ``pick`` near the end: P drifts, often without a
  sharp step;
* ``committed``: the question fixes the answer (a one-point prior): P is 1 throughout.

The model path is ``synthetic`` or ``synthetic:<preset>`` with a preset of `PRESETS`.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

from critical_windows import prompts
from critical_windows.backends import Completion, EngineSettings, Sampling

PREFIX = "synthetic"
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
# P(f) differences are rounded as in `windows` before the thresholds are applied.
_DECIMALS = 12
_SOURCE_DIGEST = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:12]


def is_synthetic(model_path: str) -> bool:
    """Whether a model path names the synthetic model ("synthetic" or "synthetic:<preset>")."""
    return model_path == PREFIX or model_path.startswith(PREFIX + ":")


# --- the tokenizer ---------------------------------------------------------------------

SPECIALS = ("<|eos|>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>")
ROLES = {"system": "<|system|>", "user": "<|user|>", "assistant": "<|assistant|>"}
# Filler: whole sentences drawn uniformly, so that text reads as text. Their first words
# differ, which makes the position inside the current sentence readable from any prefix.
SENTENCES = (
    "Let us look at each option in turn.",
    "The question asks about a key idea.",
    "We should compare the choices with care.",
    "One option seems more plausible than the others.",
    "Recall what we know about this topic.",
    "Consider the evidence given in the question.",
    "This detail matters for the answer.",
    "Some choices can be checked quickly.",
    "Weigh the remaining possibilities.",
    "Another look at the wording helps.",
)
PICK, NARROW, HINT = "pick", "narrow", "hint"
GROUPS = 2
EVENT_TEXT = {PICK: " ⇒{}", NARROW: " ∈G{}", HINT: " ~{}"}
_EVENT_RE = re.compile(r"⇒([A-Z])|∈G(\d)|~([A-Z])")


def _filler_words() -> list[str]:
    words: list[str] = []
    for sentence in SENTENCES:
        for w in sentence.split():
            if " " + w not in words:
                words.append(" " + w)
    return words


class SyntheticTokenizer:
    """Word tokens for the synthetic model's own text, UTF-8 bytes for anything else.

    Every word the model writes is one token (with its leading space), so a response of
    `L` tokens is `L` words and decoding a prefix of it gives exactly a prefix of its text.
    Prompts (questions, instructions) are encoded byte by byte around the special tokens of
    a small chat template, which round-trips any text.
    """

    def __init__(self) -> None:
        self.words = _filler_words() + [
            EVENT_TEXT[kind].format(x)
            for kind, values in (
                (PICK, LETTERS),
                (NARROW, [str(g + 1) for g in range(GROUPS)]),
                (HINT, LETTERS),
            )
            for x in values
        ]
        self._byte0 = len(SPECIALS)
        self._word0 = self._byte0 + 256
        self._special_id = {s: i for i, s in enumerate(SPECIALS)}
        self._word_id = {w: self._word0 + i for i, w in enumerate(self.words)}
        self.eos_token_id = self._special_id["<|eos|>"]
        self.vocab_size = self._word0 + len(self.words)
        self._special_re = re.compile("(" + "|".join(map(re.escape, SPECIALS)) + ")")

    def special_id(self, token: str) -> int:
        return self._special_id[token]

    def word_id(self, word: str) -> int:
        return self._word_id[word]

    @cached_property
    def _word_re(self) -> re.Pattern[str]:
        """A word token: one of the words, followed by whitespace or the end of the text."""
        words = sorted(self.words, key=len, reverse=True)
        return re.compile("(" + "|".join(map(re.escape, words)) + r")(?=\s|\Z)")

    @cached_property
    def _bytes_of(self) -> list[bytes]:
        """What each id decodes to, as UTF-8 (special tokens: their own text)."""
        return (
            [t.encode() for t in SPECIALS]
            + [bytes([b]) for b in range(256)]
            + [w.encode() for w in self.words]
        )

    def encode(self, text: str) -> list[int]:
        ids: list[int] = []
        for i, part in enumerate(self._special_re.split(text)):
            if i % 2:
                ids.append(self._special_id[part])
                continue
            for j, chunk in enumerate(self._word_re.split(part)):
                if j % 2:
                    ids.append(self._word_id[chunk])
                elif chunk:
                    raw = np.frombuffer(chunk.encode(), dtype=np.uint8)
                    ids.extend((raw.astype(np.int64) + self._byte0).tolist())
        return ids

    def __call__(self, text: str, add_special_tokens: bool = False) -> dict[str, list[int]]:
        return {"input_ids": self.encode(text)}

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        table = self._bytes_of
        try:
            raw = b"".join(table[i] for i in ids if i >= self._byte0 or not skip_special_tokens)
        except IndexError:
            bad = next(i for i in ids if not 0 <= i < self.vocab_size)
            raise ValueError(f"token id {bad} is outside the synthetic vocabulary") from None
        return raw.decode(errors="replace")

    def apply_chat_template(
        self,
        messages: Sequence[Mapping[str, str]],
        tokenize: bool = False,
        add_generation_prompt: bool = True,
    ) -> str | list[int]:
        text = "".join(f"{ROLES[m['role']]}{m['content']}<|end|>" for m in messages)
        if add_generation_prompt:
            text += ROLES["assistant"]
        return self.encode(text) if tokenize else text


# --- the model ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Spec:
    """A mixture of sub-populations; see the module docstring."""

    name: str
    populations: Mapping[str, float]  # sub-population -> weight
    length: tuple[int, int] = (40, 100)  # response length in tokens, both ends included
    concentration: float = 2.0  # of the Dirichlet prior over the letters
    hints: int = 5
    hint_accuracy: float = 0.5


POPULATIONS = ("sharp", "staged", "gradual", "committed")
PRESETS = {
    "default": Spec("default", {"sharp": 0.4, "staged": 0.2, "gradual": 0.2, "committed": 0.2}),
    "sharp": Spec("sharp", {"sharp": 1.0}),
    "flat": Spec("flat", {"committed": 1.0}),
}


@dataclass(frozen=True)
class Plan:
    """How the responses to one question are generated."""

    population: str
    n_choices: int
    length: int
    prior: tuple[float, ...]
    events: Mapping[int, str]  # token position -> event kind
    groups: tuple[int, ...] = ()  # group (0 or 1) of each letter, for `narrow`
    hint_accuracy: float = 0.5


_CHOICE_LINE = re.compile(r"^\(([A-Z])\) ", re.MULTILINE)


def n_choices(problem: str) -> int:
    """Number of lettered choices "(A) ...", "(B) ..." listed in a problem."""
    found = set(_CHOICE_LINE.findall(problem))
    n = 0
    while n < len(LETTERS) and LETTERS[n] in found:
        n += 1
    return n


def _rng(*parts: object) -> np.random.Generator:
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "big"))


def make_plan(spec: Spec, problem: str) -> Plan:
    """The plan of a question, drawn from a digest of the preset and the problem text."""
    n = n_choices(problem)
    if n < 2:
        raise ValueError(
            "synthetic model: the question lists no lettered choices (A), (B), ...; it "
            "answers multiple-choice questions only (drop 'math' from the datasets): "
            f"{problem[:80]!r}"
        )
    rng = _rng(spec.name, problem)
    names = list(spec.populations)
    weights = np.array([spec.populations[p] for p in names], dtype=float)
    population = names[rng.choice(len(names), p=weights / weights.sum())]
    length = int(rng.integers(spec.length[0], spec.length[1] + 1))
    prior = rng.dirichlet([spec.concentration] * n)

    def at(lo: float, hi: float) -> int:
        return int(rng.integers(int(lo * length), max(int(lo * length) + 1, int(hi * length))))

    groups: tuple[int, ...] = ()
    if population == "sharp":
        events = {at(0.1, 0.95): PICK}
    elif population == "staged":
        order = rng.permutation(n)
        split = int(rng.integers(1, n))
        groups = tuple(int(np.where(order == a)[0][0] >= split) for a in range(n))
        events = {at(0.1, 0.5): NARROW, at(0.55, 0.95): PICK}
    elif population == "gradual":
        spots = np.linspace(0.1 * length, 0.8 * length, spec.hints).astype(int)
        events = {int(p): HINT for p in spots}
        events[at(0.9, 1.0)] = PICK
    elif population == "committed":
        prior = np.eye(n)[int(rng.integers(n))]
        events = {at(0.1, 0.95): PICK}
    else:
        raise ValueError(f"unknown sub-population {population!r}; known: {', '.join(POPULATIONS)}")
    return Plan(
        population,
        n,
        length,
        tuple(float(w) for w in prior),
        events,
        groups,
        spec.hint_accuracy,
    )


def likelihood(plan: Plan, kind: str, value: int) -> np.ndarray:
    """P(event outcome | answer) for every letter."""
    n = plan.n_choices
    if kind == PICK:
        return np.eye(n)[value] if value < n else np.zeros(n)
    if kind == NARROW:
        return (np.array(plan.groups) == value).astype(float)
    return plan.hint_accuracy * (np.arange(n) == value) + (1 - plan.hint_accuracy) / n


def posterior(plan: Plan, outcomes: Sequence[tuple[str, int]]) -> np.ndarray:
    """The distribution of the answer after the events `outcomes`."""
    w = np.array(plan.prior)
    for kind, value in outcomes:
        w = w * likelihood(plan, kind, value)
    total = w.sum()
    if total <= 0:
        raise ValueError(f"synthetic model: events {outcomes} are impossible under the plan")
    return w / total


def answer_of(w: np.ndarray) -> int:
    """The greedy answer: the most likely letter, the first one on ties."""
    return int(np.argmax(np.round(w, _DECIMALS)))


class SyntheticModel:
    """The backend interface (see `backends.Backend`) over a mixture `Spec`."""

    def __init__(self, spec: Spec, max_model_len: int = 1 << 20):
        self.spec = spec
        # The source digest keys the journal: an edited generator never reuses old samples.
        self.name = f"synthetic-{_SOURCE_DIGEST}"
        self.tokenizer = SyntheticTokenizer()
        self.max_model_len = max_model_len
        tok = self.tokenizer
        self._prefill = tok.encode(prompts.PREFILL)
        self._end = tok.special_id("<|end|>")
        self._role_ids = {tok.special_id(t): r for r, t in ROLES.items()}
        self._event_of: dict[int, tuple[str, int]] = {}
        for kind, template in EVENT_TEXT.items():
            for v in range(len(LETTERS) if kind != NARROW else GROUPS):
                label = str(v + 1) if kind == NARROW else LETTERS[v]
                self._event_of[tok.word_id(template.format(label))] = (kind, v)

    @classmethod
    def from_path(cls, model_path: str, settings: EngineSettings | None = None) -> SyntheticModel:
        preset = model_path.partition(":")[2] or "default"
        if preset not in PRESETS:
            raise ValueError(
                f"synthetic model {model_path!r}: unknown preset {preset!r}; "
                f"known presets: {', '.join(PRESETS)}"
            )
        return cls(PRESETS[preset], settings.max_model_len if settings else 1 << 20)

    @cached_property
    def _sentences(self) -> list[list[int]]:
        return [[self.tokenizer.word_id(" " + w) for w in s.split()] for s in SENTENCES]

    @cached_property
    def _sentence_of_first(self) -> dict[int, int]:
        return {ids[0]: i for i, ids in enumerate(self._sentences)}

    def _filler_state(self, response: Sequence[int]) -> tuple[int, int]:
        """(sentence, words of it written) after the filler words of `response`."""
        sentence, written = 0, 0
        for i in response:
            if i in self._event_of:
                continue
            if written == 0:
                if i not in self._sentence_of_first:
                    raise ValueError(f"synthetic model: token {i} cannot start a filler sentence")
                sentence = self._sentence_of_first[i]
            written = (written + 1) % len(self._sentences[sentence])
        return sentence, written

    def event_text(self, kind: str, value: int) -> str:
        return EVENT_TEXT[kind].format(str(value + 1) if kind == NARROW else LETTERS[value])

    @lru_cache(maxsize=65536)  # noqa: B019 - one model per stage, a few thousand questions
    def plan(self, problem: str) -> Plan:
        return make_plan(self.spec, problem)

    # -- reading prompts

    def _messages(self, ids: Sequence[int]) -> list[tuple[str, list[int], bool]]:
        """(role, content ids, closed) of each chat turn of a prompt."""
        arr = np.asarray(ids, dtype=np.int64)
        marks = np.flatnonzero(arr < len(SPECIALS)).tolist() + [len(arr)]
        turns: list[tuple[str, list[int], bool]] = []
        for here, nxt in zip(marks, marks[1:], strict=False):
            token = int(arr[here])
            if token in self._role_ids:
                closed = nxt < len(arr) and int(arr[nxt]) == self._end
                turns.append((self._role_ids[token], arr[here + 1 : nxt].tolist(), closed))
        return turns

    def _problem(self, turns: list[tuple[str, list[int], bool]]) -> str:
        users = [c for role, c, _ in turns if role == "user"]
        if not users:
            raise ValueError("synthetic model: the prompt has no user turn")
        return self.tokenizer.decode(users[0]).rsplit("\n\n", 1)[0]

    def events_in_ids(self, ids: Sequence[int]) -> list[tuple[str, int]]:
        return [self._event_of[i] for i in ids if i in self._event_of]

    @staticmethod
    def events_in_text(text: str) -> list[tuple[str, int]]:
        out = []
        for m in _EVENT_RE.finditer(text):
            pick, group, hint = m.groups()
            if pick:
                out.append((PICK, LETTERS.index(pick)))
            elif group:
                out.append((NARROW, int(group) - 1))
            else:
                out.append((HINT, LETTERS.index(hint)))
        return out

    # -- generating

    def generate(
        self, prompts_: Sequence[Sequence[int]], params: Sequence[Sampling]
    ) -> list[list[Completion]]:
        return [self._one(ids, p) for ids, p in zip(prompts_, params, strict=True)]

    def _one(self, ids: Sequence[int], p: Sampling) -> list[Completion]:
        if p.temperature == 0 and p.n != 1:
            raise ValueError("greedy sampling (temperature 0) asks for one completion")
        turns = self._messages(ids)
        if not turns or turns[-1][0] != "assistant" or turns[-1][2]:
            raise ValueError("synthetic model: the prompt does not end in an open assistant turn")
        plan = self.plan(self._problem(turns))
        content = turns[-1][1]
        cue = self._cue(content)
        if cue is not None:  # a cued answer (critical_windows.readout): forced or followup
            answered = [c for role, c, closed in turns[:-1] if role == "assistant" and closed]
            source = content if content[: len(self._prefill)] == self._prefill else answered[-1]
            events = self.events_in_text(self.tokenizer.decode(source))
            return [self._cued(posterior(plan, events), p)]
        if content:
            if content[: len(self._prefill)] != self._prefill:
                raise ValueError(
                    "synthetic model: an open assistant turn must start with the "
                    f"chain-of-thought prefill {prompts.PREFILL!r}"
                )
            return self._continue(plan, content[len(self._prefill) :], p)
        answered = [c for role, c, closed in turns[:-1] if role == "assistant" and closed]
        if answered:  # the elicitation question after a response
            text = self.tokenizer.decode(answered[-1]).removeprefix(prompts.PREFILL)
            w = posterior(plan, self.events_in_text(text))
        else:  # the direct-answer baseline
            w = np.array(plan.prior)
        return [self._say(f"The answer is ({LETTERS[answer_of(w)]}).", p.max_tokens)]

    def _cue(self, content: Sequence[int]) -> str | None:
        """The answer cue an open assistant turn ends with, if any."""
        from critical_windows.readout import CUES

        text = self.tokenizer.decode(content)
        return next((c for c in CUES.values() if text.endswith(c)), None)

    def _cued(self, w: np.ndarray, p: Sampling) -> Completion:
        """The letter after an answer cue, with the exact letter probabilities `w` as its
        log-probabilities: the synthetic model's answer distribution is its posterior."""
        done = self._say(f"{LETTERS[answer_of(w)]}).", p.max_tokens)
        if not p.wants_logprobs:
            return done
        wanted = list(p.logprob_token_ids or ())
        letter_lp = {
            self.tokenizer.encode(LETTERS[i])[0]: float(np.log(x)) if x > 0 else -np.inf
            for i, x in enumerate(w)
        }
        steps = []
        for k, t in enumerate(done.token_ids):
            step = {i: letter_lp.get(i, -np.inf) for i in wanted} if k == 0 else {}
            step[t] = letter_lp.get(t, 0.0) if k == 0 else 0.0
            steps.append(step)
        return Completion(done.token_ids, done.text, done.finish_reason, tuple(steps))

    def _say(self, text: str, max_tokens: int) -> Completion:
        ids = self.tokenizer.encode(text)
        if len(ids) <= max_tokens:
            return Completion(tuple(ids), text, "stop")
        ids = ids[:max_tokens]
        return Completion(tuple(ids), self.tokenizer.decode(ids), "length")

    def _continue(self, plan: Plan, response: Sequence[int], p: Sampling) -> list[Completion]:
        """`p.n` continuations of a response prefix, from the exact conditional process.

        Sampling settings other than greedy are not applied: the synthetic distributions
        are what they are, so that their P(f) stays exact.
        """
        rng = np.random.default_rng(p.seed)
        w = posterior(plan, self.events_in_ids(response))
        sentence, written = self._filler_state(response)
        start = len(response)
        todo = min(plan.length - start, p.max_tokens) if plan.length > start else 0
        finish = "stop" if start + todo >= plan.length else "length"
        events = [
            (k - start, kind)
            for k, kind in sorted(plan.events.items())
            if start <= k < start + todo
        ]
        n_filler = todo - len(events)
        sentences = self._sentences
        rest = sentences[sentence][written:] if written else []
        draws = n_filler // min(map(len, sentences)) + 1
        greedy = p.temperature == 0
        out = []
        for _ in range(p.n):
            if greedy:
                answer, picks, us = answer_of(w), np.zeros(draws, int), np.zeros(len(events))
            else:
                answer = int(rng.choice(plan.n_choices, p=w))
                picks, us = rng.integers(len(sentences), size=draws), rng.random(len(events))
            tokens = list(rest)
            for j in picks:
                if len(tokens) >= n_filler:
                    break
                tokens.extend(sentences[j])
            del tokens[n_filler:]
            for (at, kind), u in zip(events, us, strict=True):
                value = self._event_value(plan, kind, answer, float(u), greedy)
                tokens.insert(at, self.tokenizer.word_id(self.event_text(kind, value)))
            out.append(Completion(tuple(tokens), self.tokenizer.decode(tokens), finish))
        return out

    @staticmethod
    def _event_value(plan: Plan, kind: str, answer: int, u: float, greedy: bool) -> int:
        if kind == PICK:
            return answer
        if kind == NARROW:
            return plan.groups[answer]
        # hint: the answer with probability hint_accuracy, else a uniformly random letter
        if greedy or u < plan.hint_accuracy:
            return answer
        return min(
            int((u - plan.hint_accuracy) / (1 - plan.hint_accuracy) * plan.n_choices),
            plan.n_choices - 1,
        )

    # -- the truth

    def exact_curve(self, problem: str, response: Sequence[int]) -> np.ndarray:
        """P(k), k = 0..len(response): the probability that a continuation of the first `k`
        response tokens ends with the response's own (greedily elicited) answer."""
        plan = self.plan(problem)
        if len(response) != plan.length:
            raise ValueError(
                f"synthetic model: a response has {len(response)} of its {plan.length} tokens "
                "(cut by max_tokens?); raise sampling.max_tokens to at least "
                f"{self.spec.length[1]} so that the truth is exact"
            )
        seen: list[tuple[str, int]] = []
        states = [posterior(plan, seen)]
        for i in response:
            if i in self._event_of:
                seen.append(self._event_of[i])
            states.append(posterior(plan, seen) if i in self._event_of else states[-1])
        answer = answer_of(states[-1])
        return np.array([s[answer] for s in states])


def load(model_path: str, settings: EngineSettings | None = None) -> SyntheticModel:
    """The synthetic backend for a model path "synthetic" or "synthetic:<preset>"."""
    return SyntheticModel.from_path(model_path, settings)


# --- scoring the detector against the truth ----------------------------------------------

TRUTH = pa.schema(
    [
        ("question_id", pa.string()),
        ("dataset", pa.string()),
        ("population", pa.string()),
        ("n_choices", pa.int32()),
        ("n_response_tokens", pa.int32()),
        ("levels", pa.list_(pa.float64())),  # the grid, f = 1 included
        ("exact_p", pa.list_(pa.float64())),  # exact P(f) on the grid
        # planted: the single token that lifts P by more than `jump`, if any
        ("planted_token", pa.int32()),
        ("planted_rise", pa.float64()),  # the largest rise of P at a single token
        # grid: the research rule applied to the exact P(f) on the grid
        ("grid_has_window", pa.bool_()),
        ("grid_level_lo", pa.float64()),
        ("grid_level_hi", pa.float64()),
        ("grid_token_start", pa.int32()),
        ("grid_token_end", pa.int32()),
        ("grid_token", pa.int32()),  # the token of the largest rise inside that step
        # span: the span rule (windows.find_windows_span) on the exact P at every token: the
        # shortest span of at most `max_span` of the tokens rising by more than `jump`, on a
        # curve with no such span falling by more than `drop`
        ("span_token_start", pa.int32()),
        ("span_token_end", pa.int32()),
        ("span_token", pa.int32()),  # the token of the largest rise inside that span
    ]
)


def truth(
    model: SyntheticModel,
    questions: pl.DataFrame,
    base: pl.DataFrame,
    truncated: pl.DataFrame,
    *,
    jump: float,
    drop: float,
    max_span: float = 0.2,
) -> pl.DataFrame:
    """The exact curve and true windows of every base response (a TRUTH frame)."""
    problem_of = dict(zip(questions["question_id"], questions["problem"], strict=True))
    dataset_of = dict(zip(questions["question_id"], questions["dataset"], strict=True))
    cuts: dict[str, list[tuple[float, int]]] = {}
    for t in truncated.select("question_id", "level", "cut_tokens").iter_rows():
        cuts.setdefault(t[0], []).append((t[1], t[2]))
    rows = []
    for qid, ids in base.select("question_id", "response_token_ids").iter_rows():
        problem = problem_of[qid]
        exact = model.exact_curve(problem, ids)
        length = len(ids)
        grid = sorted(cuts.get(qid, [])) + [(1.0, length)]
        p = np.array([exact[c] for _, c in grid])
        rises = np.round(np.diff(exact), _DECIMALS)
        token = int(np.argmax(rises)) if length else None
        planted = token if length and rises[token] > jump else None
        row: dict[str, Any] = {
            "question_id": qid,
            "dataset": dataset_of[qid],
            "population": model.plan(problem).population,
            "n_choices": model.plan(problem).n_choices,
            "n_response_tokens": length,
            "levels": [f for f, _ in grid],
            "exact_p": p.tolist(),
            "planted_token": planted,
            "planted_rise": float(rises[token]) if length else None,
            "grid_has_window": None,
            "grid_level_lo": None,
            "grid_level_hi": None,
            "grid_token_start": None,
            "grid_token_end": None,
            "grid_token": None,
            **_span_truth(exact, rises, jump, drop, max_span),
        }
        steps = np.round(np.diff(p), _DECIMALS)
        if steps.size:
            i = int(np.argmax(steps))
            (lo, c_lo), (hi, c_hi) = grid[i], grid[i + 1]
            window = bool(steps[i] > jump and max(0.0, float(-steps.min())) <= drop)
            row["grid_has_window"] = window
            if window:
                inside = rises[c_lo:c_hi]
                row.update(
                    grid_level_lo=lo,
                    grid_level_hi=hi,
                    grid_token_start=c_lo,
                    grid_token_end=c_hi,
                    grid_token=c_lo + int(np.argmax(inside)),
                )
        rows.append(row)
    return pl.from_arrow(pa.Table.from_pylist(rows, schema=TRUTH))  # type: ignore[return-value]


def _span_truth(
    exact: np.ndarray, rises: np.ndarray, jump: float, drop: float, max_span: float
) -> dict[str, int | None]:
    """The span truth of one response from its exact P at every token count."""
    none: dict[str, int | None] = {"span_token_start": None, "span_token_end": None}
    none["span_token"] = None
    length = len(exact) - 1
    widest = max(1, math.floor(max_span * length + 1e-9))
    best: tuple[int, int] | None = None
    worst_fall = 0.0
    for width in range(1, min(widest, length) + 1):
        diff = np.round(exact[width:] - exact[:-width], _DECIMALS)
        worst_fall = max(worst_fall, float(-diff.min()))
        if best is None and (diff > jump).any():
            start = int(np.argmax(diff))
            best = (start, start + width)
    if best is None or worst_fall > drop:
        return none
    a, b = best
    return {
        "span_token_start": a,
        "span_token_end": b,
        "span_token": a + int(np.argmax(rises[a:b])),
    }


# forced_rule: the research rule on the forced (logprob) curve P(original answer) of
# distributions.readout_windows, the cheap screening curve; scored when a run has one.
METHODS = ("rule", "rule_significant", "significant", "forced_rule")
TRUTHS = ("planted", "grid", "span")
SCORECARD_COLUMNS = [
    "population",
    "truth",
    "method",
    "questions",
    "true_windows",
    "detected",
    "true_positives",
    "precision",
    "recall",
    "start_error_tokens",
    "end_error_tokens",
    "start_error_frac",
    "end_error_frac",
    "width_tokens",
]


def _detections(
    windows: pl.DataFrame,
    truncated: pl.DataFrame,
    truth_: pl.DataFrame,
    readout: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Per question and method: detected or not, and the span [start, end) in tokens."""
    cut = {
        (q, f): c for q, f, c in truncated.select("question_id", "level", "cut_tokens").iter_rows()
    }
    length = dict(zip(truth_["question_id"], truth_["n_response_tokens"], strict=True))
    rows = []
    for w in windows.iter_rows(named=True):
        qid = w["question_id"]
        rule = bool(w["has_window"])
        sig = bool(w["significant"])
        span: tuple[int | None, int | None] = (None, None)
        if w["level_lo"] is not None:
            span = (
                cut[(qid, w["level_lo"])],
                length[qid] if w["level_hi"] == 1.0 else cut[(qid, w["level_hi"])],
            )
        for method, hit in zip(METHODS[:3], (rule, rule and sig, sig), strict=True):
            rows.append(
                {
                    "question_id": qid,
                    "method": method,
                    "detected": hit,
                    "start": span[0],
                    "end": span[1],
                }
            )
    forced = pl.DataFrame() if readout is None else readout.filter(pl.col("n_forced_levels") >= 2)
    for r in forced.iter_rows(named=True):
        qid, lo, hi = r["question_id"], r["forced_level_lo"], r["forced_level_hi"]
        rows.append(
            {
                "question_id": qid,
                "method": "forced_rule",
                "detected": bool(r["forced_has_window"]),
                "start": cut.get((qid, lo), 0 if lo == 0 else None),
                "end": length[qid] if hi == 1.0 else cut.get((qid, hi)),
            }
        )
    return pl.DataFrame(
        rows,
        schema={
            "question_id": pl.String,
            "method": pl.String,
            "detected": pl.Boolean,
            "start": pl.Int64,
            "end": pl.Int64,
        },
    )


def score(
    windows: pl.DataFrame,
    truncated: pl.DataFrame,
    truth_: pl.DataFrame,
    readout: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Precision, recall and location error of the detected windows against the truth.

    Two truths: ``planted``, a single token that lifts the exact P by more than the jump
    threshold (true span [t, t+1)); and ``grid``, the research rule applied to the exact P
    on the same grid of levels (true span: that step's cuts). Three detectors from the
    WINDOWS table: ``rule`` (has_window), ``rule_significant`` (has_window and
    significant) and ``significant`` (the Fisher test of the largest step alone); with a
    READOUT_WINDOWS frame `readout`, also ``forced_rule``, the rule on the forced (logprob)
    curve. A
    detection is a true positive when its span contains the true window's token. Location
    errors are |detected start - true start| and |detected end - true end| over detections
    on questions that have a true window, in tokens and as a fraction of the response.
    One row per sub-population and ``all``.
    """
    found = _detections(windows, truncated, truth_, readout).join(
        truth_.select(
            "question_id",
            "population",
            "n_response_tokens",
            "planted_token",
            "grid_has_window",
            "grid_token_start",
            "grid_token_end",
            "grid_token",
            "span_token_start",
            "span_token_end",
            "span_token",
        ),
        on="question_id",
        how="inner",
    )
    truths = {
        "planted": found.with_columns(
            is_true=pl.col("planted_token").is_not_null(),
            token=pl.col("planted_token"),
            true_start=pl.col("planted_token"),
            true_end=pl.col("planted_token") + 1,
        ),
        "grid": found.with_columns(
            is_true=pl.col("grid_has_window").fill_null(False),
            token=pl.col("grid_token"),
            true_start=pl.col("grid_token_start"),
            true_end=pl.col("grid_token_end"),
        ),
        "span": found.with_columns(
            is_true=pl.col("span_token").is_not_null(),
            token=pl.col("span_token"),
            true_start=pl.col("span_token_start"),
            true_end=pl.col("span_token_end"),
        ),
    }
    L = pl.col("n_response_tokens")
    scored = pl.concat(
        [
            df.with_columns(truth=pl.lit(name)).with_columns(
                tp=pl.col("detected")
                & pl.col("is_true")
                & (pl.col("start") <= pl.col("token"))
                & (pl.col("token") < pl.col("end")),
                located=pl.col("detected") & pl.col("is_true"),
                start_err=(pl.col("start") - pl.col("true_start")).abs(),
                end_err=(pl.col("end") - pl.col("true_end")).abs(),
            )
            for name, df in truths.items()
        ]
    )
    pooled = scored.with_columns(population=pl.lit("all"))
    located = pl.col("located")

    def mean_where(expr: pl.Expr) -> pl.Expr:
        return expr.filter(located).cast(pl.Float64).mean()

    out = (
        pl.concat([pooled, scored])
        .group_by("population", "truth", "method")
        .agg(
            questions=pl.len(),
            true_windows=pl.col("is_true").sum(),
            detected=pl.col("detected").sum(),
            true_positives=pl.col("tp").sum(),
            start_error_tokens=mean_where(pl.col("start_err")),
            end_error_tokens=mean_where(pl.col("end_err")),
            start_error_frac=mean_where(pl.col("start_err") / L),
            end_error_frac=mean_where(pl.col("end_err") / L),
            width_tokens=mean_where(pl.col("end") - pl.col("start")),
        )
        .with_columns(
            precision=pl.when(pl.col("detected") > 0).then(
                pl.col("true_positives") / pl.col("detected")
            ),
            recall=pl.when(pl.col("true_windows") > 0).then(
                pl.col("true_positives") / pl.col("true_windows")
            ),
        )
    )
    order = {p: i for i, p in enumerate(("all", *POPULATIONS))}
    return (
        out.with_columns(
            _p=pl.col("population").replace_strict(order, default=len(order)),
            _t=pl.col("truth").replace_strict({t: i for i, t in enumerate(TRUTHS)}),
            _m=pl.col("method").replace_strict({m: i for i, m in enumerate(METHODS)}),
        )
        .sort("_p", "population", "_t", "_m")
        .select(SCORECARD_COLUMNS)
    )


def score_run(
    model_path: str,
    questions: pl.DataFrame,
    base: pl.DataFrame,
    truncated: pl.DataFrame,
    windows: pl.DataFrame,
    *,
    jump: float,
    drop: float,
    max_span: float = 0.2,
    readout: pl.DataFrame | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(TRUTH, scorecard) of a workflow run of the synthetic model `model_path`, its span
    truth with the run's `windows.max_span`; `readout`: its READOUT_WINDOWS, scored as
    ``forced_rule`` when they hold a forced curve."""
    if not is_synthetic(model_path):
        raise ValueError(
            f"model path {model_path!r} is not the synthetic model: only its windows are "
            "known exactly and can be scored"
        )
    truth_ = truth(
        load(model_path), questions, base, truncated, jump=jump, drop=drop, max_span=max_span
    )
    return truth_, score(windows, truncated, truth_, readout)


# --- simulated runs: the stages without the workflow, for benchmarks and tests ------------


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
    from critical_windows.generation import derive_seed, truncate_responses

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
    from critical_windows import windows

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
