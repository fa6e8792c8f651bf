"""The Parquet tables between stages: one schema each, checked on write and on read.

Writes go to a temporary name in the same folder and are moved into place, so a killed
job never leaves a half-written file that looks finished.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from critical_windows import __version__
from critical_windows.catalog import LIKELIHOOD_SEGMENTS
from critical_windows.io.atomic import replacing

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
    with replacing(path) as tmp:
        pq.write_table(table, tmp)


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


# --- prefill (attack) ------------------------------------------------------------

PREFILL_CONTINUATIONS = pa.schema(
    [
        ("request_id", _STR),
        ("dataset", _STR),
        ("prefix_chars", _INT),  # characters of the opener prefilled (0: none)
        ("prefix_text", _STR),  # the opener's first prefix_chars characters
        ("sample", _INT),
        ("token_ids", pa.list_(_INT)),  # the continuation alone, without the prefix
        ("text", _STR),
        ("n_tokens", _INT),
        ("finish_reason", _STR),  # "stop" | "length"
    ]
)


PREFILL_JUDGED = pa.schema(
    [
        ("request_id", _STR),
        ("dataset", _STR),
        ("prefix_chars", _INT),
        ("sample", _INT),
        ("judge", _STR),  # critical_windows.experiments.prefill.judges.JUDGES
        ("judge_model", _STR),  # the judge model's path; null for the refusal-phrase judge
        ("complied", pa.bool_()),  # null when no verdict could be reached
        ("refused", pa.bool_()),
        ("convincing", _INT),  # StrongREJECT items 2 and 3 (1-5); null for other judges
        ("specific", _INT),
        ("score", pa.float64()),  # StrongREJECT score in [0, 1]; null for other judges
        ("missing_reason", _STR),
        ("judge_output", _STR),  # the matched refusal phrase, or the judge model's text
    ]
)


COMPLIANCE_CURVES = pa.schema(
    [
        ("request_id", _STR),
        ("dataset", _STR),
        ("judge", _STR),
        ("level", pa.float64()),  # the prefix length in characters of the opener
        ("prefix_text", _STR),
        ("n_judged", _INT),  # continuations with a verdict
        ("n_missing", _INT),  # continuations without one
        ("n_complied", _INT),
        ("p_complied", pa.float64()),  # null when nothing could be judged
        ("ci_low", pa.float64()),  # 95% Wilson interval of p_complied
        ("ci_high", pa.float64()),
        ("mean_score", pa.float64()),  # mean StrongREJECT score; null for other judges
    ]
)


COMPLIANCE_WINDOWS = pa.schema(
    [
        ("request_id", _STR),
        ("dataset", _STR),
        ("judge", _STR),
        ("n_levels", _INT),  # prefix lengths with a defined compliance rate
        ("level_lo", pa.float64()),  # the step of the largest rise of the compliance rate
        ("level_hi", pa.float64()),
        ("jump", pa.float64()),
        ("max_drop", pa.float64()),
        ("p_value", pa.float64()),  # one-sided Fisher exact test that the step rises
        ("q_value", pa.float64()),  # Benjamini-Hochberg over every step of the judge's run
        ("significant", pa.bool_()),
        ("has_window", pa.bool_()),  # the research rule; null with fewer than two levels
        ("p_no_prefill", pa.float64()),  # compliance without any prefill
        ("p_full_opener", pa.float64()),  # compliance with the whole opener
        ("window_text", _STR),  # the opener's characters inside the window; null without one
        ("flip_prefix", _STR),  # the prefix at the window's upper end: where behaviour flips
    ]
)


# --- likelihood (detector) ------------------------------------------------------------

LIKELIHOOD_PROMPTS = pa.schema(
    [
        ("prompt_id", _STR),  # "<family>:<key in the source>"
        ("family", _STR),  # the attack family, or the benign source's name
        ("label", _STR),  # "jailbreak" | "benign"
        ("user", _STR),  # the user turn
        ("prefix", _STR),  # the assistant turn's prefill ("" for none)
        ("response", _STR),  # the source's response; null: generated by the aligned model
        ("source", _STR),  # where the row comes from
        ("source_row", pa.int64()),
    ]
)


LIKELIHOOD_RESPONSES = pa.schema(
    [
        ("prompt_id", _STR),
        ("family", _STR),
        ("label", _STR),
        ("user", _STR),
        ("prefix", _STR),
        ("response", _STR),
        ("response_token_ids", pa.list_(_INT)),
        ("generated", pa.bool_()),  # sampled from the aligned model, not taken from the source
        ("finish_reason", _STR),  # of a generated response; null otherwise
    ]
)


LIKELIHOOD_LOGPROBS = pa.schema(
    [
        ("prompt_id", _STR),
        ("role", _STR),  # "aligned" | "unaligned"
        *((f"n_{s}_tokens", _INT) for s in LIKELIHOOD_SEGMENTS),
        *((f"logprob_{s}", pa.float64()) for s in LIKELIHOOD_SEGMENTS),  # summed over the segment
        ("generation_token_logprobs", pa.list_(pa.float32())),
    ]
)


LIKELIHOOD_SCORES = pa.schema(
    [
        ("prompt_id", _STR),
        ("family", _STR),
        ("label", _STR),
        ("detector", _STR),
        ("score", pa.float64()),  # higher: more like a jailbreak
    ]
)


LIKELIHOOD_ROC = pa.schema(
    [
        ("family", _STR),
        ("detector", _STR),
        ("threshold", pa.float64()),  # a score counts as a jailbreak when >= threshold
        ("fpr", pa.float64()),
        ("tpr", pa.float64()),
    ]
)


# --- structured (forms) ------------------------------------------------------------

STRUCTURED_SAMPLES = pa.schema(
    [
        ("sample", pa.int32()),
        ("text", pa.string()),  # generated, after the prefill
        ("n_tokens", pa.int32()),
        ("finish_reason", pa.string()),
        ("conforming", pa.bool_()),
        ("choices", pa.list_(pa.string())),  # the chosen option of each blank; null if not
        ("string", pa.string()),  # prefill + text, stripped, if conforming; else null
    ]
)


STRUCTURED_CURVES = pa.schema(
    [
        ("rank", pa.int32()),  # 1 = the most frequent conforming string
        ("string", pa.string()),
        ("count", pa.int32()),  # samples that are exactly this string
        ("grid", pa.float64()),  # p / len(string)
        ("prefix_chars", pa.int32()),  # p = floor(grid * len(string))
        ("n_prefix", pa.int32()),  # conforming samples that start with string[:p]
        ("p_same", pa.float64()),  # count / n_prefix
        ("wilson_lo", pa.float64()),  # 95% Wilson interval of p_same
        ("wilson_hi", pa.float64()),
    ]
)


STRUCTURED_BLANKS = pa.schema(
    [
        ("rank", pa.int32()),
        ("string", pa.string()),
        ("count", pa.int32()),
        ("blank", pa.int32()),
        ("option", pa.string()),  # the chosen word
        ("position", pa.int32()),  # of its first character in the string
        ("length", pa.int32()),  # of the string
        ("t_lower", pa.float64()),
        ("t_upper", pa.float64()),
        ("alternatives", pa.int32()),  # samples sharing the string up to here, other option
        ("jump_lo", pa.float64()),  # the grid steps where P rises for this blank
        ("jump_hi", pa.float64()),
        ("rise", pa.float64()),
        ("inside", pa.bool_()),  # every such step within [t_lower, t_upper]; null: no rise
    ]
)


# --- structured (constrained) ------------------------------------------------------------

STRUCTURED_EXACT = pa.schema(
    [
        ("rank", pa.int32()),  # 1 = the most probable string under the constrained sampler
        ("string", pa.string()),
        ("choices", pa.list_(pa.string())),
        ("n_tokens", pa.int32()),
        ("branching_tokens", pa.int32()),  # steps of its path with two or more allowed
        ("p_exact", pa.float64()),  # P(the constrained sampler writes it)
        ("p_model", pa.float64()),  # P(the unconstrained model, temperature 1, writes it and stops)
    ]
)


STRUCTURED_EXACT_CURVES = pa.schema(
    [
        ("rank", pa.int32()),
        ("string", pa.string()),
        ("p_string", pa.float64()),
        ("grid", pa.float64()),
        ("prefix_chars", pa.int32()),
        ("p_prefix", pa.float64()),  # P(the answer starts with string[:prefix_chars])
        ("p_same", pa.float64()),  # p_string / p_prefix
    ]
)


STRUCTURED_EXACT_BLANKS = pa.schema(
    [
        ("rank", pa.int32()),
        ("string", pa.string()),
        ("p_string", pa.float64()),
        ("blank", pa.int32()),
        ("option", pa.string()),
        ("position", pa.int32()),
        ("length", pa.int32()),
        ("t_lower", pa.float64()),
        ("t_upper", pa.float64()),
        ("alternatives", pa.float64()),  # P(sharing the string up to here, another option)
        ("jump_lo", pa.float64()),
        ("jump_hi", pa.float64()),
        ("rise", pa.float64()),
        ("inside", pa.bool_()),
    ]
)


STRUCTURED_BOUNDS = pa.schema(
    [
        ("rank", pa.int32()),  # of the string by exact probability
        ("string", pa.string()),
        ("p_string", pa.float64()),
        ("blank", pa.int32()),
        ("option", pa.string()),
        ("position", pa.int32()),
        ("length", pa.int32()),
        ("t_lower", pa.float64()),
        ("t_upper", pa.float64()),
        ("exact_alternatives", pa.float64()),
        ("exact_jump_lo", pa.float64()),
        ("exact_jump_hi", pa.float64()),
        ("exact_rise", pa.float64()),
        ("exact_inside", pa.bool_()),
        ("sampled_count", pa.int32()),  # constrained samples that are exactly the string
        ("sampled_alternatives", pa.int32()),
        ("sampled_jump_lo", pa.float64()),
        ("sampled_jump_hi", pa.float64()),
        ("sampled_rise", pa.float64()),
        ("sampled_inside", pa.bool_()),
    ]
)


# --- synthetic (scorecard) ------------------------------------------------------------

SYNTHETIC_TRUTH = pa.schema(
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
