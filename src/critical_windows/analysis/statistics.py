"""The statistics of the window rules: Wilson intervals, Fisher's exact test and the
Benjamini-Hochberg correction."""

from __future__ import annotations

import numpy as np

Z95 = 1.959963984540054


def wilson_interval(
    k: np.ndarray | int, n: np.ndarray | int, z: float = Z95
) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval of `k` successes in `n` trials; NaN where `n` is 0."""
    k = np.asarray(k, dtype=float)
    n = np.asarray(n, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = k / n
        denom = 1 + z**2 / n
        centre = (p + z**2 / (2 * n)) / denom
        half = z / denom * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2))
    low = np.where(n > 0, np.clip(centre - half, 0, 1), np.nan)
    high = np.where(n > 0, np.clip(centre + half, 0, 1), np.nan)
    return low, high


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of one proportion, as floats; (0, 1) with no trials."""
    if n == 0:
        return 0.0, 1.0
    lo, hi = wilson_interval(k, n, z)
    return float(lo), float(hi)


def fisher_greater(
    k_hi: np.ndarray, n_hi: np.ndarray, k_lo: np.ndarray, n_lo: np.ndarray
) -> np.ndarray:
    """One-sided Fisher exact p-values that the rate k_hi/n_hi exceeds k_lo/n_lo.

    Vectorised over arrays of 2x2 tables; NaN where either side has no trials. Conditional
    on the margins, the successes of the upper side are hypergeometric; the p-value is the
    upper tail from the observed count.
    """
    k_hi, n_hi, k_lo, n_lo = (np.asarray(a, dtype=np.int64) for a in (k_hi, n_hi, k_lo, n_lo))
    p = np.full(k_hi.shape, np.nan)
    ok = (n_hi > 0) & (n_lo > 0)
    if not ok.any():
        return p
    k_hi, n_hi, k_lo, n_lo = k_hi[ok], n_hi[ok], k_lo[ok], n_lo[ok]
    total = n_hi + n_lo
    successes = k_hi + k_lo
    top = np.minimum(successes, n_hi)
    log_fact = np.concatenate([[0.0], np.cumsum(np.log(np.arange(1, total.max() + 1)))])

    def log_comb(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return log_fact[a] - log_fact[b] - log_fact[a - b]

    width = int((top - k_hi).max()) + 1
    tail = np.empty(k_hi.shape)
    chunk = max(1, 4_000_000 // width)
    for start in range(0, len(k_hi), chunk):
        rows = slice(start, start + chunk)
        x = k_hi[rows, None] + np.arange(width)[None, :]
        inside = x <= top[rows, None]
        x = np.where(inside, x, k_hi[rows, None])
        log_pmf = (
            log_comb(successes[rows, None], x)
            + log_comb((total - successes)[rows, None], n_hi[rows, None] - x)
            - log_comb(total[rows], n_hi[rows])[:, None]
        )
        tail[rows] = np.where(inside, np.exp(log_pmf), 0.0).sum(axis=1)
    p[ok] = np.clip(tail, 0.0, 1.0)
    return p


def bh_adjust(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (q-values); NaN entries are not tests."""
    p = np.asarray(p, dtype=float)
    q = np.full(p.shape, np.nan)
    tested = ~np.isnan(p)
    m = int(tested.sum())
    if m == 0:
        return q
    values = p[tested]
    order = np.argsort(values, kind="stable")
    ranked = values[order] * m / np.arange(1, m + 1)
    ranked = np.minimum.accumulate(ranked[::-1])[::-1]
    adjusted = np.empty(m)
    adjusted[order] = np.clip(ranked, 0.0, 1.0)
    q[tested] = adjusted
    return q
