"""Adaptive resampling: localize critical windows with a fraction of the samples.

The fixed protocol (METHOD.md §2, steps 3-4) samples M continuations at every level of a
grid. The adaptive driver here instead, for every question:

1. walks a coarse grid of levels from the top down (continuations from high levels are
   short, so cheap), stopping below the first level whose P is decided low (`top_down`);
2. keeps sampling a grid level, a few continuations per round, only until its Wilson
   interval of P(f) lies wholly above or below `1 - jump`, or it has `max_samples`
   (`classify`);
3. bisects a step from a "low" to a "high" level, the largest estimated rise first, down
   to `min_gap_tokens` (`next_bisection`); a bisection level stops by a sequential
   probability ratio test between the estimates at the two ends of the step it splits,
   which needs far fewer samples than an interval when they are far apart;
4. confirms the window rule's call (`rule_pending`): while the largest rise between
   consecutive levels has a Wilson interval that straddles `jump`, or a fall estimated
   above `drop - drop_margin` has one that straddles `drop`, it samples one end of that
   step more, the end whose estimate gains most per continuation token (usually the
   upper end: its continuations are shorter), up to `confirm_samples`;
5. stops at `max_levels` levels or `max_tokens_per_question` continuation tokens.

With unit cuts (`cuts.unit` "sentence" or "step"), the cuts of `cuts.every` and `cuts.max`
(critical_windows.cot.segmentation) are the candidates: the coarse grid takes the unit cut
nearest each of its fractions, and a bisection the unit cut nearest the middle of its step,
until no unit starts inside it. A level is then its token fraction cut_tokens / L, as
with the fixed grid of units.

So samples go where they can change the rule's call: a level far below or above
`1 - jump` is decided in 3 continuations; a borderline rise gets up to `confirm_samples`
at its ends, as many as the research scripts give every level. Sample counts are odd (3, 5,
7, ...), so unless answers are missing no estimate is exactly 1/2 to tie with `jump`. The
defaults were chosen on the synthetic scorecard (benchmarks/bench_adaptive.py; the
README's "Adaptive sampling" gives the figures).

Consistency is judged inside the stage: every continuation (and the original) is answered
greedily with the elicitation prompt of `prompts.elicit_messages` and its answer extracted
with `critical_windows.grading.extraction`, exactly the requests that `elicit_answers` sends later
(their journal is shared, so the pipeline pays them once). Multiple-choice letters are
compared exactly; MATH answers by their extracted LaTeX string (the later grading uses
mathematical equivalence, so the in-stage signal is a cheap proxy there).

Every engine call goes through `generation.Generator.run`, which journals: a killed job
replays the same decisions from the journal and generates only what is missing. Results are
RESAMPLED rows with `chosen_by` "grid" or "bisection"; `truncate_at_sampled_levels` then
writes the TRUNCATED rows of exactly the sampled levels, so elicitation, grading, detection,
figures and the explorer run unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from statistics import NormalDist
from typing import Any

import polars as pl

from critical_windows.analysis.statistics import wilson
from critical_windows.cot import prompts, segmentation
from critical_windows.cot.generation import (
    Generator,
    Request,
    cut_length,
    derive_seed,
    truncate_responses,
)
from critical_windows.engine.types import Sampling
from critical_windows.grading.extraction import extract
from critical_windows.io import tables

GRID, BISECTION = "grid", "bisection"


@dataclass(frozen=True)
class AdaptiveSettings:
    """The config's `adaptive` block (see the schema for each key)."""

    levels: tuple[float, ...] = (0.1, 0.35, 0.6, 0.85)
    initial_samples: int = 3
    step_samples: int = 2
    max_samples: int = 5
    confidence: float = 0.6
    min_gap_tokens: int = 12
    max_levels: int = 10
    max_tokens_per_question: int | None = None
    confirm: bool = True
    confirm_samples: int = 25  # most continuations of a level sampled to confirm the rule's call
    drop_margin: float = 0.1  # falls estimated above drop - drop_margin are confirmed
    top_down: bool = True
    sprt_error: float = 0.05
    jump: float = 0.5  # the window rule's thresholds (config windows.jump, windows.drop)
    drop: float = 0.3

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None, **extra: Any) -> AdaptiveSettings:
        known = {f.name for f in fields(cls)}
        given = {k: v for k, v in {**(values or {}), **extra}.items() if k in known}
        if "levels" in given:
            given["levels"] = tuple(sorted(given["levels"]))
        return cls(**given)

    @property
    def most_samples(self) -> int:
        """Most continuations of any level (confirmation included)."""
        return max(self.max_samples, self.confirm_samples)

    @property
    def z(self) -> float:
        return NormalDist().inv_cdf(0.5 + self.confidence / 2)


def classify(
    k: int, n: int, s: AdaptiveSettings, against: tuple[float, float] | None = None
) -> str | None:
    """The sequential stopping rule: "low", "high", or None while undecided.

    A grid level (`against` None) is decided when its Wilson interval (coverage
    `confidence`) lies wholly above ("high") or below ("low") 1 - jump. A bisection level is
    decided by a sequential probability ratio test between the estimates `against` = (P at
    the lower end, P at the upper end) of the step it splits, at error rate `sprt_error`:
    it needs far fewer samples than an interval when the two ends are far apart. At
    `max_samples` a level is decided by its point estimate (the nearer hypothesis)."""
    if n == 0:
        return None
    threshold = 1 - s.jump
    if against is None:
        if n >= s.initial_samples:
            lo, hi = wilson(k, n, s.z)
            if lo > threshold:
                return "high"
            if hi < threshold:
                return "low"
        if n >= s.max_samples:
            return "high" if k / n > threshold else "low"
        return None
    p0 = min(max(against[0], 0.05), threshold - 0.1)
    p1 = max(min(against[1], 0.95), threshold + 0.1)
    llr = k * math.log(p1 / p0) + (n - k) * math.log((1 - p1) / (1 - p0))
    bound = math.log((1 - s.sprt_error) / s.sprt_error)
    if llr >= bound:
        return "high"
    if llr <= -bound:
        return "low"
    if n >= s.max_samples:
        return "high" if llr > 0 else "low"
    return None


def level_decided(k: int, n: int, s: AdaptiveSettings, against: Any = None) -> bool:
    """Whether sampling of a level stops (see `classify`)."""
    return n >= s.max_samples or classify(k, n, s, against) is not None


@dataclass
class Level:
    """What is known at one cut of one question."""

    cut: int
    level: float
    chosen_by: str
    against: tuple[float, float] | None = None  # a bisection level's (P low end, P high end)
    consistent: int = 0
    graded: int = 0
    drawn: int = 0  # continuations sampled (graded or not)
    rounds: int = 0

    @property
    def p(self) -> float:
        return self.consistent / self.graded

    def state(self, s: AdaptiveSettings) -> str | None:
        return classify(self.consistent, self.graded, s, self.against)


Point = tuple[int, str | None, float]  # (cut, class, P estimate)


def next_bisection(
    points: Sequence[Point],
    length: int,
    s: AdaptiveSettings,
    allowed: Sequence[int] | None = None,
) -> tuple[int, tuple[float, float]] | None:
    """The cut to add, with the estimates at the ends of the step it splits, or None.

    `points` are the decided levels; the whole response (cut `length`) is P = 1, "high".
    A step from a "low" to a "high" level is where P can rise by more than `jump`: split it
    at its middle while its cuts are more than `min_gap_tokens` apart, the largest rise first.
    With `allowed` (the unit cuts), the split is the allowed cut nearest the middle, while
    one lies inside the step.
    """
    pts = sorted(p for p in points if p[0] < length)
    best: tuple[float, int, tuple[float, float]] | None = None
    for (c0, s0, p0), (c1, s1, p1) in zip(pts, [*pts[1:], (length, "high", 1.0)], strict=True):
        if s0 != "low" or s1 != "high":
            continue
        if allowed is None:
            cut = (c0 + c1) // 2 if c1 - c0 > s.min_gap_tokens else None
        else:
            inside = [c for c in allowed if c0 < c < c1]
            cut = min(inside, key=lambda c: abs(2 * c - c0 - c1)) if inside else None
        if cut is not None and (best is None or p1 - p0 > best[0]):
            best = (p1 - p0, cut, (p0, p1))
    return None if best is None else (best[1], best[2])


def level_for_cut(cut: int, length: int) -> float:
    """A short decimal fraction f with floor(f * length) == cut, 0 < f < 1."""
    for digits in range(2, 10):
        f = round(cut / length, digits)
        if 0 < f < 1 and cut_length(f, length) == cut:
            return f
    return (cut + 0.5) / length


@dataclass
class _Question:
    qid: str
    problem: str
    task: str
    answer_type: str
    choices: list[str]
    prompt: list[int]
    response: list[int]
    orig_answer: str | None = None
    levels: dict[int, Level] = field(default_factory=dict)
    samples: list[dict[str, Any]] = field(default_factory=list)
    tokens: int = 0
    allowed: list[int] | None = None  # unit cuts: the cuts a level may take

    def level_of(self, cut: int) -> float:
        """The level of a cut: a short fraction on the grid; cut / L at units (as
        segmentation.truncate_at_units writes it)."""
        if self.allowed is None:
            return level_for_cut(cut, len(self.response))
        return cut / len(self.response)

    def answer(self, text: str) -> str | None:
        got = extract(text, self.answer_type, len(self.choices), self.choices)
        return None if got.answer is None else " ".join(got.answer.split())


def _elicit_request(gen: Generator, q: _Question, response: str, what: str) -> Request:
    ids = prompts.render(
        gen.tokenizer, prompts.elicit_messages(q.problem, q.task, q.answer_type, response)
    )
    return gen.request(ids, Sampling(0.0, 1.0, gen.settings.elicitation_max_tokens), what)


def resample_adaptive(
    gen: Generator,
    questions: pl.DataFrame,
    base: pl.DataFrame,
    s: AdaptiveSettings,
    judge: Generator | None = None,
    cuts: Mapping[str, Any] | None = None,
) -> pl.DataFrame:
    """Continuations of adaptively chosen prefixes of every base response (a RESAMPLED
    frame with `chosen_by`); `judge` runs the elicitations (default: `gen`); `cuts` (the
    config's block) with a unit: the levels are unit cuts."""
    judge = judge or gen
    st = gen.settings
    tok = gen.tokenizer
    units = _unit_settings(cuts)
    q_of = {q["question_id"]: q for q in questions.to_dicts()}
    qs: list[_Question] = []
    for b in base.select("question_id", "prompt_token_ids", "response_token_ids").to_dicts():
        q = q_of[b["question_id"]]
        qs.append(
            _Question(
                b["question_id"],
                q["problem"],
                q["task"],
                q["answer_type"],
                list(q["choices"] or []),
                list(b["prompt_token_ids"]),
                list(b["response_token_ids"]),
            )
        )
    text_of = dict(zip(base["question_id"], base["response_text"], strict=True))
    orig = {q.qid: _elicit_request(judge, q, text_of[q.qid], f"question {q.qid} orig") for q in qs}
    done = judge.run(list(orig.values()), "adaptive: orig answers")
    for q in qs:
        q.orig_answer = q.answer(done[orig[q.qid].key][0].text)
        length = len(q.response)
        if units is not None:
            found = segmentation.response_cuts(text_of[q.qid], q.response, tok, units)
            q.allowed = [c.cut_tokens for c in found]
        for f in s.levels:
            c = cut_length(f, length)
            if q.allowed is not None:
                if not q.allowed:  # a response of one unit has no cut
                    break
                c = min(q.allowed, key=lambda a: abs(a - c))
            if c not in q.levels:
                q.levels[c] = Level(c, f if q.allowed is None else q.level_of(c), GRID)

    for round_ in range(10_000):
        work: list[tuple[_Question, Level, Request]] = []
        for q in qs:
            for lv in _pending(q, s):
                n = s.initial_samples if lv.drawn == 0 else s.step_samples
                n = max(1, min(n, s.most_samples - lv.drawn))
                seed = derive_seed(st.seed, q.qid, lv.level, "resample", lv.rounds)
                req = gen.request(
                    q.prompt + q.response[: lv.cut],
                    Sampling(st.temperature, st.top_p, st.max_tokens, n, seed),
                    f"question {q.qid} level {lv.level} round {lv.rounds}",
                )
                work.append((q, lv, req))
        if not work:
            break
        sampled = gen.run([r for _, _, r in work], f"adaptive round {round_}: continuations")
        asks: list[tuple[_Question, Level, dict[str, Any], Request]] = []
        for q, lv, req in work:
            lv.rounds += 1
            for c in sampled[req.key]:
                row = {
                    "question_id": q.qid,
                    "level": lv.level,
                    "sample": lv.drawn,
                    "token_ids": list(c.token_ids),
                    "text": c.text,
                    "n_tokens": len(c.token_ids),
                    "finish_reason": c.finish_reason,
                    "chosen_by": lv.chosen_by,
                }
                lv.drawn += 1
                q.tokens += len(c.token_ids)
                q.samples.append(row)
                text = tok.decode(
                    q.response[: lv.cut] + list(c.token_ids), skip_special_tokens=True
                )
                what = f"question {q.qid} resample level {lv.level} sample {row['sample']}"
                asks.append((q, lv, row, _elicit_request(judge, q, text, what)))
        answered = judge.run([a for *_, a in asks], f"adaptive round {round_}: answers")
        for q, lv, row, req in asks:
            got = q.answer(answered[req.key][0].text)
            row["answer"] = got
            if got is not None and q.orig_answer is not None:
                lv.graded += 1
                lv.consistent += int(got == q.orig_answer)
    return tables.frame(
        [{k: v for k, v in r.items() if k != "answer"} for q in qs for r in q.samples],
        tables.RESAMPLED,
    )


def _over_budget(q: _Question, s: AdaptiveSettings) -> bool:
    return s.max_tokens_per_question is not None and q.tokens >= s.max_tokens_per_question


def _pending(q: _Question, s: AdaptiveSettings) -> list[Level]:
    """The levels of `q` to sample in the next round: undecided levels; else the next grid
    level down (the grid is walked from the top, and stops below the first "low" level);
    else a bisection level; else a level that confirms the window rule's call."""
    if _over_budget(q, s):
        return []
    levels = sorted(q.levels.values(), key=lambda lv: lv.cut)
    if q.orig_answer is None:  # nothing can be graded: the coarse grid at its first draw
        return [lv for lv in levels if lv.drawn == 0]
    open_ = [lv for lv in levels if 0 < lv.drawn < s.max_samples and lv.state(s) is None]
    if open_:
        return open_
    sampled = [lv for lv in levels if lv.graded > 0]
    waiting = [lv for lv in levels if lv.chosen_by == GRID and lv.drawn == 0]
    if waiting and (not sampled or sampled[0].state(s) != "low" or not s.top_down):
        return waiting if not s.top_down else waiting[-1:]
    points = [(lv.cut, lv.state(s), lv.p) for lv in sampled]
    if len(q.levels) < s.max_levels:
        found = next_bisection(points, len(q.response), s, q.allowed)
        if found is not None and found[0] not in q.levels:
            cut, ends = found
            lv = Level(cut, q.level_of(cut), BISECTION, ends)
            q.levels[cut] = lv
            return [lv]
    if not s.confirm:
        return []
    return rule_pending(sampled, len(q.response), s)


def rule_pending(levels: Sequence[Level], length: int, s: AdaptiveSettings) -> list[Level]:
    """The levels whose further samples could change the window rule's call (METHOD.md §2,
    step 9) on the curve sampled so far, while under `confirm_samples`.

    The rule takes the largest rise between consecutive levels and every fall. With Wilson
    intervals (coverage `confidence`) at each level, the largest rise is undecided while
    its interval straddles `jump`, and a fall, while its estimate exceeds
    `drop - drop_margin` and its interval straddles `drop` (a fall only matters while a
    window is possible). Of the two ends of such a step, the one whose estimate gains most
    per continuation token is sampled more. The whole response (cut `length`) is P = 1
    exactly."""
    pts = sorted((lv for lv in levels if lv.graded > 0 and lv.cut < length), key=lambda v: v.cut)
    if not pts:
        return []
    est = [(lv, lv.p, *wilson(lv.consistent, lv.graded, s.z)) for lv in pts]
    est.append((None, 1.0, 1.0, 1.0))
    pairs = list(zip(est, est[1:], strict=False))
    a, b = max(pairs, key=lambda ab: ab[1][1] - ab[0][1])
    pending: list[tuple[Any, Any]] = []
    if b[2] - a[3] <= s.jump < b[3] - a[2]:
        pending.append((a, b))
    if b[3] - a[2] > s.jump:  # a window is possible: its falls matter
        for c, d in pairs:
            if c[1] - d[1] > s.drop - s.drop_margin and c[2] - d[3] <= s.drop < c[3] - d[2]:
                pending.append((c, d))
    out: list[Level] = []
    for pair in pending:
        ends = [e[0] for e in pair if e[0] is not None and e[0].drawn < s.most_samples]
        if len(ends) == 2:
            ends = [max(ends, key=lambda lv: _gain(lv, length))]
        for lv in ends:
            if lv not in out:
                out.append(lv)
    return out


def _gain(lv: Level, length: int) -> float:
    """Reduction of the variance of a level's estimate per continuation token."""
    p = (lv.consistent + 1) / (lv.graded + 2)
    return p * (1 - p) / (lv.graded * (lv.graded + 1)) / max(1, length - lv.cut)


def _unit_settings(cuts: Mapping[str, Any] | None) -> segmentation.CutSettings | None:
    """The cuts block when it cuts at units; None for the fraction grid."""
    settings = segmentation.CutSettings.from_mapping(cuts)
    return None if settings.unit == "fraction" else settings


def truncate_at_sampled_levels(
    base: pl.DataFrame,
    resampled: pl.DataFrame,
    tokenizer: Any,
    cuts: Mapping[str, Any] | None = None,
) -> pl.DataFrame:
    """TRUNCATED rows of every (question, level) present in `resampled`, so that the later
    stages see exactly the levels the adaptive driver chose (with `cuts` at units: those
    unit cuts, with their unit index)."""
    units = _unit_settings(cuts)
    if units is not None:
        sampled = resampled.select("question_id", "level").unique()
        every = segmentation.truncate_at_units(base, tokenizer, units)
        return every.join(sampled, on=["question_id", "level"], how="semi").sort(
            "question_id", "level"
        )
    levels = (
        resampled.select("question_id", "level")
        .unique()
        .group_by("question_id")
        .agg(pl.col("level").sort())
    )
    of = dict(zip(levels["question_id"], levels["level"].to_list(), strict=True))
    parts = [
        truncate_responses(base.filter(pl.col("question_id") == qid), of[qid], tokenizer)
        for qid in base["question_id"]
        if qid in of
    ]
    if not parts:
        return tables.frame([], tables.TRUNCATED)
    return pl.concat(parts).sort("question_id", "level")
