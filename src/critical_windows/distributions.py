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
from collections.abc import Iterable, Mapping

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
    support = set(p) | set(q)
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
    support = set(p) | set(q) | set(extra)
    ps, qs = smooth(p, support, alpha), smooth(q, support, alpha)
    return sum(ps[a] * math.log(ps[a] / qs[a]) for a in support if ps[a] > 0)
