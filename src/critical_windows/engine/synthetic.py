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
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path

import numpy as np

from critical_windows.catalog import CUES, LETTERS, PREFILL
from critical_windows.engine.types import Completion, EngineSettings, Sampling

PREFIX = "synthetic"


# P(f) differences are rounded as in `windows` before the thresholds are applied.
DECIMALS = 12  # rounding of exact probabilities before comparisons


_SOURCE_DIGEST = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:12]


def is_synthetic(model_path: str) -> bool:
    """Whether a model path names the synthetic model ("synthetic" or "synthetic:<preset>")."""
    return model_path == PREFIX or model_path.startswith(PREFIX + ":")


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
    return int(np.argmax(np.round(w, DECIMALS)))


class SyntheticModel:
    """The backend interface (see `backends.Backend`) over a mixture `Spec`."""

    def __init__(self, spec: Spec, max_model_len: int = 1 << 20):
        self.spec = spec
        # The source digest keys the journal: an edited generator never reuses old samples.
        self.name = f"synthetic-{_SOURCE_DIGEST}"
        self.tokenizer = SyntheticTokenizer()
        self.max_model_len = max_model_len
        tok = self.tokenizer
        self._prefill = tok.encode(PREFILL)
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
        if cue is not None:  # a cued answer (critical_windows.cot.readout): forced or followup
            answered = [c for role, c, closed in turns[:-1] if role == "assistant" and closed]
            source = content if content[: len(self._prefill)] == self._prefill else answered[-1]
            events = self.events_in_text(self.tokenizer.decode(source))
            return [self._cued(posterior(plan, events), p)]
        if content:
            if content[: len(self._prefill)] != self._prefill:
                raise ValueError(
                    "synthetic model: an open assistant turn must start with the "
                    f"chain-of-thought prefill {PREFILL!r}"
                )
            return self._continue(plan, content[len(self._prefill) :], p)
        answered = [c for role, c, closed in turns[:-1] if role == "assistant" and closed]
        if answered:  # the elicitation question after a response
            text = self.tokenizer.decode(answered[-1]).removeprefix(PREFILL)
            w = posterior(plan, self.events_in_text(text))
        else:  # the direct-answer baseline
            w = np.array(plan.prior)
        return [self._say(f"The answer is ({LETTERS[answer_of(w)]}).", p.max_tokens)]

    def _cue(self, content: Sequence[int]) -> str | None:
        """The answer cue an open assistant turn ends with, if any."""

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
