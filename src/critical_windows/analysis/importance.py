"""Per-cut importance (issue #17): what the text between one cut and the next does to the
answer, in the resampling terms of Thought Anchors (Bogdan et al., 2025).

For consecutive cuts `lo < hi` of a question (the last one paired with the end of the
response, f = 1), two scores:

- `delta_p`: P(hi) - P(lo), P the share of continuations consistent with the original
  answer, with the 95% Newcombe hybrid score interval (the difference of two Wilson
  intervals; exact at f = 1, where P is 1 by construction);
- `kl`: KL(answers at hi || answers at lo) in nats, the resampling importance, with a 95%
  percentile bootstrap interval (each level's answers resampled with replacement). The
  answers at f = 1 are the original's alone. Smoothing is `distributions.KL_ALPHA`.

A level with no graded answer leaves its pairs without a score.
"""

from __future__ import annotations

import zlib

import numpy as np
import polars as pl

from critical_windows.analysis import distributions
from critical_windows.analysis.statistics import Z95, wilson_interval

BOOTSTRAP = 200  # bootstrap resamples of each level's answers for the KL interval
_QUESTION = ["dataset", "question_id"]


def newcombe_interval(
    k_hi: np.ndarray, n_hi: np.ndarray, k_lo: np.ndarray, n_lo: np.ndarray, z: float = Z95
) -> tuple[np.ndarray, np.ndarray]:
    """Newcombe's hybrid score interval of p_hi - p_lo (his method 10); NaN without trials."""
    k_hi, n_hi, k_lo, n_lo = (np.asarray(a, dtype=float) for a in (k_hi, n_hi, k_lo, n_lo))
    with np.errstate(divide="ignore", invalid="ignore"):
        p_hi, p_lo = k_hi / n_hi, k_lo / n_lo
    l_hi, u_hi = wilson_interval(k_hi, n_hi, z)
    l_lo, u_lo = wilson_interval(k_lo, n_lo, z)
    d = p_hi - p_lo
    low = d - np.sqrt((p_hi - l_hi) ** 2 + (u_lo - p_lo) ** 2)
    high = d + np.sqrt((u_hi - p_hi) ** 2 + (p_lo - l_lo) ** 2)
    return np.clip(low, -1, 1), np.clip(high, -1, 1)


def _kl_interval(
    answers_hi: list[str], answers_lo: list[str], rng: np.random.Generator, extra: list[str]
) -> tuple[float, float]:
    """Percentile bootstrap interval of KL(hi || lo)."""
    hi, lo = np.array(answers_hi, dtype=object), np.array(answers_lo, dtype=object)
    values = []
    for _ in range(BOOTSTRAP):
        p = distributions.from_counts(hi[rng.integers(0, len(hi), len(hi))])
        q = distributions.from_counts(lo[rng.integers(0, len(lo), len(lo))])
        values.append(distributions.kl(p, q, extra=extra))
    low, high = np.percentile(values, [2.5, 97.5])
    return float(low), float(high)


def importance(graded: pl.DataFrame, curve: pl.DataFrame, seed: int = 0) -> pl.DataFrame:
    """An IMPORTANCE frame: one row per pair of consecutive defined levels of each question.

    `graded` gives each continuation's answer (`resample_answer`, the original's
    `orig_answer`); `curve` is the CURVES frame of the same run (with `cut_tokens`,
    `char_offset` and `unit_index` of each level, as `windows.detect` returns it).
    """
    answers: dict[tuple[str, float], list[str]] = {}
    for qid, level, answer in graded.select("question_id", "level", "resample_answer").iter_rows():
        if answer is not None:
            answers.setdefault((qid, level), []).append(answer)
    for qid, answer in (
        graded.group_by("question_id").agg(pl.col("orig_answer").first()).iter_rows()
    ):
        if answer is not None:
            answers[(qid, 1.0)] = [answer]
    defined = curve.filter(pl.col("p_consistent").is_not_null()).sort(*_QUESTION, "level")
    nxt = {
        f"{c}_hi": pl.col(c).shift(-1).over(_QUESTION)
        for c in ("level", "n_consistent", "n_graded", "p_consistent", "char_offset")
    }
    pairs = (
        defined.with_columns(**nxt)
        .filter(pl.col("level_hi").is_not_null())
        .select(
            *_QUESTION,
            level_lo=pl.col("level"),
            level_hi=pl.col("level_hi"),
            unit_index=pl.col("unit_index"),
            cut_tokens=pl.col("cut_tokens"),
            char_start=pl.col("char_offset"),
            char_end=pl.col("char_offset_hi"),
            delta_p=(pl.col("p_consistent_hi") - pl.col("p_consistent")),
            _k_hi=pl.col("n_consistent_hi"),
            _n_hi=pl.col("n_graded_hi"),
            _k_lo=pl.col("n_consistent"),
            _n_lo=pl.col("n_graded"),
        )
    )
    k_lo, n_lo = pairs["_k_lo"].to_numpy(), pairs["_n_lo"].to_numpy()
    low, high = newcombe_interval(pairs["_k_hi"].to_numpy(), pairs["_n_hi"].to_numpy(), k_lo, n_lo)
    # P(1) = 1 is exact: the interval is the lower level's Wilson interval, reflected.
    at_one = pairs["level_hi"].to_numpy() == 1.0
    l_lo, u_lo = wilson_interval(k_lo, n_lo)
    low = np.where(at_one, 1 - u_lo, low)
    high = np.where(at_one, 1 - l_lo, high)
    kl, kl_low, kl_high = [], [], []
    for qid, lo, hi in pairs.select("question_id", "level_lo", "level_hi").iter_rows():
        a_hi, a_lo = answers.get((qid, hi)), answers.get((qid, lo))
        if not a_hi or not a_lo:
            kl.append(None)
            kl_low.append(None)
            kl_high.append(None)
            continue
        extra = sorted(set(a_hi) | set(a_lo))
        kl.append(
            distributions.kl(
                distributions.from_counts(a_hi), distributions.from_counts(a_lo), extra=extra
            )
        )
        rng = np.random.default_rng([seed, zlib.crc32(qid.encode()), round(lo * 1e9)])
        interval = _kl_interval(a_hi, a_lo, rng, extra)
        kl_low.append(interval[0])
        kl_high.append(interval[1])
    return pairs.drop("_k_hi", "_n_hi", "_k_lo", "_n_lo").with_columns(
        delta_p_low=pl.Series(low, dtype=pl.Float64).fill_nan(None),
        delta_p_high=pl.Series(high, dtype=pl.Float64).fill_nan(None),
        kl=pl.Series(kl, dtype=pl.Float64),
        kl_low=pl.Series(kl_low, dtype=pl.Float64),
        kl_high=pl.Series(kl_high, dtype=pl.Float64),
    )
