"""The Parquet tables between stages: one schema each, checked on write and on read.

Writes go to a temporary name in the same folder and are moved into place, so a killed
job never leaves a half-written file that looks finished.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from critical_windows import __version__

_STR = pa.string()
_INT = pa.int32()
_IDS = pa.list_(pa.int32())

QUESTIONS = pa.schema(
    [
        ("question_id", _STR),  # stable across machines: "<dataset>-<source key>"
        ("dataset", _STR),
        ("problem", _STR),  # exactly what the model is shown: question and lettered choices
        ("choices", pa.list_(_STR)),  # empty for MATH
        ("gold", _STR),  # a letter for multiple choice, the LaTeX answer for MATH
        ("answer_type", _STR),  # "multiple_choice" | "math"
        ("task", _STR),  # the task word of METHOD.md, e.g. "science"
        ("subject", _STR),  # nullable
        ("level", _STR),  # nullable
        ("source_row", pa.int64()),  # row of the source file (0-based data row)
    ]
)

REJECTS = pa.schema([("dataset", _STR), ("file", _STR), ("row", pa.int64()), ("reason", _STR)])

BASE = pa.schema(
    [
        ("question_id", _STR),
        ("prompt_token_ids", _IDS),  # chat template + "Let's think step by step: "
        ("response_token_ids", _IDS),
        ("response_text", _STR),
        ("n_response_tokens", _INT),
        ("finish_reason", _STR),  # "stop" | "length"
        ("direct_text", _STR),  # the direct-answer baseline, no chain of thought
        ("n_direct_tokens", _INT),
        ("direct_finish_reason", _STR),
    ]
)

TRUNCATED = pa.schema(
    [
        ("question_id", _STR),
        ("level", pa.float64()),  # the fraction f
        ("n_response_tokens", _INT),  # L
        ("cut_tokens", _INT),  # floor(f * L)
        ("prefix_token_ids", _IDS),  # the first cut_tokens response tokens
        ("prefix_text", _STR),
        ("char_offset", _INT),  # where the cut falls in response_text
        # sentence and step cuts (critical_windows.cot.segmentation): the unit the cut opens,
        # and the response's number of units; null for fraction cuts
        ("unit_index", _INT),
        ("n_units", _INT),
    ]
)

RESAMPLED = pa.schema(
    [
        ("question_id", _STR),
        ("level", pa.float64()),
        ("sample", _INT),
        ("token_ids", _IDS),  # the continuation alone, without the prefix
        ("text", _STR),
        ("n_tokens", _INT),
        ("finish_reason", _STR),
        ("chosen_by", _STR),  # how the level was chosen: "grid" | "bisection" (adaptive)
    ]
)

ELICITED = pa.schema(
    [
        ("question_id", _STR),
        ("kind", _STR),  # "orig" | "stump" | "resample" | "direct"
        ("level", pa.float64()),  # null for orig and direct
        ("sample", _INT),  # null unless kind == "resample"
        ("source_finish_reason", _STR),  # of the text answered from; null for stump
        ("answer_text", _STR),
        ("n_answer_tokens", _INT),
        ("answer_finish_reason", _STR),
        # answer_readout logprobs (critical_windows.cot.readout): the probability of each of the
        # question's letters at the answer position, renormalised over them (A, B, ... in
        # order; null for MATH), and the greedy answer's sequence log-probability
        ("answer_probs", pa.list_(pa.float64())),
        ("answer_logprob", pa.float64()),
    ]
)

_ANSWER_COLUMNS = [
    (f"{kind}_{col}", _STR)
    for kind in ("orig", "stump", "resample", "direct")
    for col in ("answer", "missing_reason")
]

GRADED = pa.schema(
    [
        ("question_id", _STR),
        ("dataset", _STR),
        ("answer_type", _STR),
        ("level", pa.float64()),
        ("sample", _INT),
        ("gold", _STR),
        # "gold_unparseable" when math-verify cannot read a MATH gold: every flag against
        # the gold is then null, never False; null otherwise
        ("gold_missing_reason", _STR),
        *_ANSWER_COLUMNS,
        ("orig_is_right", pa.bool_()),
        ("direct_is_right", pa.bool_()),
        ("is_right", pa.bool_()),
        ("is_consistent", pa.bool_()),
        ("stump_is_right", pa.bool_()),
        ("stump_is_consistent", pa.bool_()),
        ("is_stump", pa.bool_()),
    ]
)

MISSING_SUMMARY = pa.schema(
    [("dataset", _STR), ("kind", _STR), ("missing_reason", _STR), ("count", pa.int64())]
)

CURVES = pa.schema(
    [
        ("question_id", _STR),
        ("dataset", _STR),
        ("level", pa.float64()),  # a truncation fraction f; 1.0 is the original response
        ("n_graded", _INT),  # continuations whose consistency could be graded (1 at f = 1)
        ("n_missing", _INT),  # continuations left out because an answer is missing
        ("n_consistent", _INT),
        ("p_consistent", pa.float64()),  # P(f); null when nothing could be graded
        ("ci_low", pa.float64()),  # 95% Wilson interval of P(f); exactly P(1) at f = 1
        ("ci_high", pa.float64()),
        ("p_right", pa.float64()),  # share of continuations with the gold answer
        ("p_stump", pa.float64()),  # share of continuations with the stump's answer
        ("stump_answer", _STR),  # the bare prefix's answer (the original's at f = 1)
        ("stump_is_right", pa.bool_()),
        ("stump_is_consistent", pa.bool_()),
        # the cut: its tokens (L at f = 1), its offset in response_text (the text's length
        # at f = 1) and the unit it opens (the number of units at f = 1; null for fraction
        # cuts)
        ("cut_tokens", _INT),
        ("char_offset", _INT),
        ("unit_index", _INT),
    ]
)

WINDOWS = pa.schema(
    [
        ("question_id", _STR),
        ("dataset", _STR),
        ("gold", _STR),
        ("orig_answer", _STR),
        ("direct_answer", _STR),
        ("orig_is_right", pa.bool_()),
        ("direct_is_right", pa.bool_()),
        ("n_levels", _INT),  # levels with a defined P(f), f = 1 included
        ("level_lo", pa.float64()),  # the step of the largest rise of P(f)
        ("level_hi", pa.float64()),
        ("jump", pa.float64()),  # P(level_hi) - P(level_lo)
        ("max_drop", pa.float64()),  # the largest fall between consecutive levels (>= 0)
        ("p_value", pa.float64()),  # one-sided Fisher exact test that the step rises
        ("q_value", pa.float64()),  # Benjamini-Hochberg over every step of the run
        ("significant", pa.bool_()),  # q_value <= fdr
        ("has_window", pa.bool_()),  # the research rule; null with fewer than two levels
        ("token_start", _INT),  # the window in response tokens; null without a window
        ("token_end", _INT),
        ("char_start", _INT),  # the window in characters of response_text
        ("char_end", _INT),
        ("window_text", _STR),
        # the window in units (sentence and step cuts): the first unit inside it, the
        # first unit after it, and the response's number of units; null for fraction cuts
        ("unit_start", _INT),
        ("unit_end", _INT),
        ("n_units", _INT),
    ]
)

# Answer distributions beside P(f) (issue #14, critical_windows.analysis.distributions): per
# question and level (f = 1: the original), the sampled distribution and the logprob readout.
LEVEL_DISTRIBUTIONS = pa.schema(
    [
        ("dataset", _STR),
        ("question_id", _STR),
        ("level", pa.float64()),
        ("answers", pa.list_(_STR)),  # the graded continuations' answers, sorted
        ("shares", pa.list_(pa.float64())),  # their shares (missing answers left out)
        ("entropy", pa.float64()),  # of the sampled distribution, in nats
        ("tv_step", pa.float64()),  # total variation to the previous level's distribution
        ("kl_step", pa.float64()),  # KL(this || previous), smoothed (distributions.KL_ALPHA)
        ("p_orig_forced", pa.float64()),  # logprob readout of the stump: P(original answer)
        ("p_orig_resampled", pa.float64()),  # its mean over the level's continuations
        ("forced_entropy", pa.float64()),  # of the stump's letter distribution
        ("forced_tv_step", pa.float64()),  # its total variation to the previous level's
    ]
)

# Per question: the window rule on the forced (logprob) curve and its gap to P(f).
READOUT_WINDOWS = pa.schema(
    [
        ("dataset", _STR),
        ("question_id", _STR),
        ("forced_gap", pa.float64()),  # mean |p_orig_forced - P(f)| over the sampled levels
        ("n_forced_levels", _INT),  # levels with a forced P(original answer), f = 1 included
        ("forced_level_lo", pa.float64()),  # the step of the largest rise of the forced curve
        ("forced_level_hi", pa.float64()),
        ("forced_jump", pa.float64()),
        ("forced_max_drop", pa.float64()),
        ("forced_has_window", pa.bool_()),  # rise > jump and no fall > drop
    ]
)

# Per-cut importance (issue #17): what adding the text between a cut and the next one does
# to the answer, in Thought Anchors' resampling terms.
IMPORTANCE = pa.schema(
    [
        ("question_id", _STR),
        ("dataset", _STR),
        ("level_lo", pa.float64()),  # the cut before the text
        ("level_hi", pa.float64()),  # the next cut (1.0: the end of the response)
        ("unit_index", _INT),  # the unit the lower cut opens; null for fraction cuts
        ("cut_tokens", _INT),  # tokens of the lower cut
        ("char_start", _INT),  # the text between the cuts, in characters of response_text
        ("char_end", _INT),
        ("delta_p", pa.float64()),  # P(level_hi) - P(level_lo), P the consistency
        ("delta_p_low", pa.float64()),  # 95% Newcombe (Wilson-based) interval of delta_p
        ("delta_p_high", pa.float64()),
        ("kl", pa.float64()),  # KL(answers at level_hi || answers at level_lo), nats
        ("kl_low", pa.float64()),  # 95% percentile bootstrap interval of kl
        ("kl_high", pa.float64()),
    ]
)

# Harmful requests of the jailbreak experiments (METHOD.md §5): AdvBench, JailbreakBench and
# StrongREJECT, normalised by critical_windows.data.harmful.prepare_requests.
REQUESTS = pa.schema(
    [
        ("request_id", _STR),  # stable across machines: "<dataset>-<source row>"
        ("dataset", _STR),  # "advbench" | "jailbreakbench" | "strongreject"
        ("request", _STR),  # exactly what the user turn says
        ("target", _STR),  # the affirmative opening the source pairs with it; nullable
        ("category", _STR),  # nullable (AdvBench has none)
        ("source", _STR),  # where the source says the request comes from; nullable
        ("source_row", pa.int64()),  # row of the source file (0-based data row)
    ]
)


class TableError(ValueError):
    """A table does not match its schema."""


def frame(rows: list[dict[str, Any]], schema: pa.Schema) -> pl.DataFrame:
    """Rows as a frame of the table's columns (typed even when empty)."""
    return pl.from_arrow(pa.Table.from_pylist(rows, schema=schema))  # type: ignore[return-value]


def conform(df: pl.DataFrame, schema: pa.Schema, where: str) -> pa.Table:
    """Return `df` as an Arrow table of exactly `schema`, or raise naming what differs."""
    missing = [n for n in schema.names if n not in df.columns]
    extra = [c for c in df.columns if c not in schema.names]
    if missing or extra:
        raise TableError(f"{where}: columns missing {missing}, unexpected {extra}")
    table = df.select(schema.names).to_arrow()
    try:
        return table.cast(schema)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as err:
        raise TableError(f"{where}: cannot cast to the table schema: {err}") from err


def write_table(
    df: pl.DataFrame,
    path: str | os.PathLike[str],
    schema: pa.Schema,
    metadata: Mapping[str, Any] | None = None,
) -> None:
    """Check `df` against `schema` and write it atomically, with `metadata` as JSON."""
    path = Path(path)
    table = conform(df, schema, str(path))
    meta = {"critical_windows_version": __version__, **(metadata or {})}
    table = table.replace_schema_metadata(
        {b"critical_windows": json.dumps(meta, sort_keys=True, default=str).encode()}
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_table(path: str | os.PathLike[str], schema: pa.Schema) -> pl.DataFrame:
    """Read a table written by `write_table`, checking its columns and types."""
    table = pq.read_table(path)
    got = table.schema.remove_metadata()
    if not got.equals(schema):
        raise TableError(
            f"{path}: schema differs from the expected one:\n{got}\nexpected:\n{schema}"
        )
    return pl.from_arrow(table)  # type: ignore[return-value]


def read_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The metadata that `write_table` stored with a table."""
    raw = pq.read_schema(path).metadata or {}
    return json.loads(raw.get(b"critical_windows", b"{}"))
