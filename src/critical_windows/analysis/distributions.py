"""Answer distributions and the distances between them (issue #14).

A distribution here is a mapping answer -> probability, summing to 1 over its support.
It comes either from counts (the graded answers of the sampled continuations at one level)
or from log-probabilities (the model's next-token scores of the valid letters at the answer
position, renormalised over those letters). Missing answers are not an answer: they are
left out of a count distribution, and a distribution with no mass is `None`.

Distances:
- total variation `tv(p, q) = 1/2 * sum |p(a) - q(a)|`, in [0, 1], needs no smoothing;
- `kl(p, q)` in nats, with additive (Laplace) smoothing `alpha` on the union of both
  supports (plus `extra` answers, e.g. every valid letter of a multiple-choice question):
  `p'(a) = (p(a) + alpha) / (1 + alpha * K)` with `K` the size of the support, so that an
  answer one side never gives does not make KL infinite. `KL_ALPHA` is the default.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from critical_windows.catalog import LETTERS

Distribution = dict[str, float]

KL_ALPHA = 1e-3  # additive smoothing for KL, per answer in the joint support


def from_counts(answers: Iterable[str | None]) -> Distribution | None:
    """The empirical distribution of `answers`, leaving out missing ones (None)."""
    counts = Counter(a for a in answers if a is not None)
    total = sum(counts.values())
    if total == 0:
        return None
    return {a: c / total for a, c in sorted(counts.items())}


def from_logprobs(logprobs: Mapping[str, float | None]) -> Distribution | None:
    """Softmax of the log-probabilities of the valid answers, renormalised over them.

    An answer whose log-probability is None or -inf (not among what the backend returned)
    gets probability 0. None when no answer has a finite log-probability.
    """
    finite = {a: lp for a, lp in logprobs.items() if lp is not None and math.isfinite(lp)}
    if not finite:
        return None
    top = max(finite.values())
    weights = {a: math.exp(lp - top) for a, lp in finite.items()}
    total = sum(weights.values())
    return {a: (weights[a] / total if a in weights else 0.0) for a in sorted(logprobs)}


def prob(dist: Distribution | None, answer: str | None) -> float | None:
    """P(answer) under `dist`; None when either is missing."""
    if dist is None or answer is None:
        return None
    return dist.get(answer, 0.0)


def mode(dist: Distribution | None) -> str | None:
    """The most likely answer (ties: the first in sorted order)."""
    if not dist:
        return None
    return max(sorted(dist), key=lambda a: dist[a])


def entropy(dist: Distribution | None) -> float | None:
    """Shannon entropy in nats."""
    if dist is None:
        return None
    return -sum(p * math.log(p) for p in dist.values() if p > 0)


def tv(p: Distribution | None, q: Distribution | None) -> float | None:
    """Total-variation distance; None when either side is missing."""
    if p is None or q is None:
        return None
    support = sorted(set(p) | set(q))  # a fixed order: the same sum in every process
    return 0.5 * sum(abs(p.get(a, 0.0) - q.get(a, 0.0)) for a in support)


def smooth(dist: Distribution, support: Iterable[str], alpha: float = KL_ALPHA) -> Distribution:
    """Additive smoothing of `dist` over `support` (which must contain its answers)."""
    keys = sorted(set(support) | set(dist))
    total = 1.0 + alpha * len(keys)
    return {a: (dist.get(a, 0.0) + alpha) / total for a in keys}


def kl(
    p: Distribution | None,
    q: Distribution | None,
    alpha: float = KL_ALPHA,
    extra: Iterable[str] = (),
) -> float | None:
    """KL(p || q) in nats after additive smoothing `alpha` of both sides over the union of
    their supports and `extra`; None when either side is missing."""
    if p is None or q is None:
        return None
    support = sorted(set(p) | set(q) | set(extra))
    ps, qs = smooth(p, support, alpha), smooth(q, support, alpha)
    return sum(ps[a] * math.log(ps[a] / qs[a]) for a in support if ps[a] > 0)


# --- per-level curves from distributions (tables.LEVEL_DISTRIBUTIONS, READOUT_WINDOWS) ----

_QUESTION = ["dataset", "question_id"]


def _letters(probs: Sequence[float] | None) -> Distribution | None:
    """A logprob readout (ELICITED.answer_probs: A, B, ... in order) as a distribution."""
    if probs is None:
        return None
    return {LETTERS[i]: float(p) for i, p in enumerate(probs)}


def level_distributions(graded: Any, elicited: Any) -> Any:
    """Per question and level (f = 1: the original), the answer distributions beside P(f).

    `graded` follows tables.GRADED, `elicited` tables.ELICITED (one dataset or several,
    with a `dataset` column added or taken from `graded`). Columns:
    - the sampled distribution (`answers`, `shares`: the graded continuations' answers,
      missing ones left out; at f = 1 the original answer alone), its `entropy`, and
      `tv_step` / `kl_step`, the total variation and KL(this level || previous level), with
      `KL_ALPHA` smoothing over both supports and the question's letters;
    - from the logprob readout (multiple choice with answer_readout logprobs, else null):
      `p_orig_forced`, the stump's (at f = 1 the original's) probability of the original
      answer at the answer position; `p_orig_resampled`, the mean of that probability over
      the level's continuations; `forced_entropy` and `forced_tv_step` of the stump's
      letter distribution.
    """
    import polars as pl

    ds_of = dict(
        graded.select("question_id", "dataset").unique().iter_rows()
    )  # question -> dataset
    orig_of = dict(graded.select("question_id", "orig_answer").unique("question_id").iter_rows())
    forced: dict[tuple[str, float | None], Distribution | None] = {}
    resampled: dict[tuple[str, float], list[Distribution]] = {}
    cols = ["question_id", "kind", "level", "answer_probs"]
    for qid, kind, level, probs in elicited.select(cols).iter_rows():
        dist = _letters(probs)
        if kind == "stump":
            forced[(qid, level)] = dist
        elif kind == "orig":
            forced[(qid, 1.0)] = dist
        elif kind == "resample" and dist is not None:
            resampled.setdefault((qid, level), []).append(dist)
    answers: dict[tuple[str, float], list[str | None]] = {}
    for qid, level, answer in graded.select("question_id", "level", "resample_answer").iter_rows():
        answers.setdefault((qid, level), []).append(answer)
    for qid, orig in orig_of.items():
        answers[(qid, 1.0)] = [orig]
    rows = []
    prev: dict[str, tuple[Distribution | None, Distribution | None]] = {}
    for qid, level in sorted(answers, key=lambda k: (k[0], k[1])):
        sampled = from_counts(answers[(qid, level)])
        letters = forced.get((qid, level))
        orig = orig_of.get(qid)
        last_sampled, last_forced = prev.get(qid, (None, None))
        extra = list(letters) if letters else ()
        conts = resampled.get((qid, level), [])
        rows.append(
            {
                "dataset": ds_of[qid],
                "question_id": qid,
                "level": level,
                "answers": list(sampled) if sampled else None,
                "shares": list(sampled.values()) if sampled else None,
                "entropy": entropy(sampled),
                "tv_step": tv(sampled, last_sampled),
                "kl_step": kl(sampled, last_sampled, extra=extra),
                "p_orig_forced": prob(letters, orig),
                "p_orig_resampled": (
                    sum(d.get(orig, 0.0) for d in conts) / len(conts)
                    if conts and orig is not None
                    else None
                ),
                "forced_entropy": entropy(letters),
                "forced_tv_step": tv(letters, last_forced),
            }
        )
        prev[qid] = (sampled, letters)
    from critical_windows.io import tables

    return pl.from_arrow(tables.pa.Table.from_pylist(rows, schema=tables.LEVEL_DISTRIBUTIONS))


def readout_windows(levels: Any, curves: Any, *, jump: float, drop: float) -> Any:
    """Per question: the research window rule on the forced (logprob) curve P(original
    answer), and its gap to the sampled curve P(f).

    `forced_gap` is the mean over the sampled levels (f < 1) of |p_orig_forced - P(f)|,
    where both are defined; `forced_jump` the largest rise of p_orig_forced between
    consecutive levels with one (f = 1 included), between `forced_level_lo` and
    `forced_level_hi`; `forced_max_drop` its largest fall; `forced_has_window` the rule
    (rise > jump, no fall > drop); null with fewer than two levels.
    """
    import polars as pl

    from critical_windows.io import tables

    both = levels.join(
        curves.select(*_QUESTION, "level", "p_consistent"), on=[*_QUESTION, "level"], how="left"
    )
    rows = []
    for (ds, qid), part in both.sort(*_QUESTION, "level").group_by(_QUESTION, maintain_order=True):
        gaps = [
            abs(f - p)
            for lv, f, p in part.select("level", "p_orig_forced", "p_consistent").iter_rows()
            if lv < 1 and f is not None and p is not None
        ]
        pts = [
            (lv, f) for lv, f in part.select("level", "p_orig_forced").iter_rows() if f is not None
        ]
        row: dict[str, Any] = {
            "dataset": ds,
            "question_id": qid,
            "forced_gap": sum(gaps) / len(gaps) if gaps else None,
            "n_forced_levels": len(pts),
        }
        if len(pts) >= 2:
            steps_ = [
                (a[0], b[0], round(b[1] - a[1], 12)) for a, b in zip(pts, pts[1:], strict=False)
            ]
            lo, hi, rise = max(steps_, key=lambda s: (s[2], -s[0]))
            fall = max(0.0, *(-s[2] for s in steps_))
            row.update(
                forced_level_lo=lo,
                forced_level_hi=hi,
                forced_jump=rise,
                forced_max_drop=fall,
                forced_has_window=rise > jump and fall <= drop,
            )
        rows.append(row)
    return pl.from_arrow(tables.pa.Table.from_pylist(rows, schema=tables.READOUT_WINDOWS))
