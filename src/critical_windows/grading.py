"""Grade elicited answers: extract them, compare them, flag every resample.

Multiple-choice answers are letters and compare by equality. MATH answers compare by
mathematical equivalence through math-verify (`verify(parse(gold), parse(answer))`, gold or
reference first), never by string equality. Parsing is the expensive part, so each distinct
string is parsed once, each distinct pair is verified once, the work is spread over worker
processes when there is a lot of it, and results persist in a small Parquet cache.

math-verify bounds each parse and each comparison with `signal.alarm`, which only works in
the main thread of a process. Work therefore runs in this process only when it is small and
this is the main thread; otherwise it runs in forked workers, whose only thread is their
main one. Fork (not spawn) because spawn re-runs the `__main__` module in every worker, and
under Snakemake that module is the rule's script.
"""

from __future__ import annotations

import argparse
import cmath
import contextlib
import fcntl
import functools
import itertools
import json
import logging
import multiprocessing
import os
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import polars as pl
import sympy
from math_verify import parse, verify
from math_verify.errors import TimeoutException
from math_verify.utils import timeout

from critical_windows import answer_forms, audit, extraction, tables
from critical_windows.extraction import Extraction

logger = logging.getLogger(__name__)

MULTIPLE_CHOICE = "multiple_choice"
MATH = "math"
ANSWER_TYPES = (MULTIPLE_CHOICE, MATH)
KINDS = ("orig", "stump", "resample", "direct")

PARSE_TIMEOUT_S = 5
"""math-verify's bound on one parse; it counts whole seconds (signal.alarm)."""
VERIFY_TIMEOUT_S = 5
"""math-verify's bound on one comparison of two parsed answers."""
METHOD = (
    f"math-verify {version('math-verify')}, latex2sympy2_extended "
    f"{version('latex2sympy2_extended')}, answers parsed as $...$, {answer_forms.VERSION}"
)
"""Cached results are reused only when they were computed the same way. Timed-out results,
the only ones the limits could change, are never cached."""

RETRY_FACTOR = 4
"""A parse or comparison that timed out is tried again with this many times the limit."""
PARALLEL_FROM = 64
"""Fewer strings or pairs than this are handled in this process (when it may)."""

# (flag, reference column, answer column): the reference goes first into `verify`.
COMPARISONS = (
    ("orig_is_right", "gold", "orig_answer"),
    ("direct_is_right", "gold", "direct_answer"),
    ("is_right", "gold", "resample_answer"),
    ("is_consistent", "orig_answer", "resample_answer"),
    ("stump_is_right", "gold", "stump_answer"),
    ("stump_is_consistent", "orig_answer", "stump_answer"),
    ("is_stump", "stump_answer", "resample_answer"),
)

_CACHE_SCHEMA = {
    "a": pl.String,
    "b": pl.String,  # null: the row records whether `a` parses
    "answer_type": pl.String,
    "result": pl.Boolean,
    "method": pl.String,
}


# --------------------------------------------------------------------------- math-verify


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


class _Timeout(Exception):
    """math-verify ran out of time: the result is unknown, not a failure to cache."""


def _reraise_thread_error(err: Exception) -> None:
    if "threaded environment" in str(err):
        raise err


def parse_math(latex: str, limit: int = PARSE_TIMEOUT_S) -> list[Any]:
    """math-verify's reading of one LaTeX answer: sympy objects, then the string itself.

    The answer is first rewritten by `answer_forms.normalise` and its symbols unified by
    `answer_forms.unify_symbols`. Raises `_Timeout` when parsing takes longer than `limit`
    seconds.
    """
    try:
        parsed = parse(
            f"${answer_forms.normalise(latex)}$", parsing_timeout=limit, raise_on_error=True
        )
        return answer_forms.unify_symbols(parsed)
    except TimeoutException as err:
        raise _Timeout(latex) from err
    except Exception as err:  # what parse returns [] for without raise_on_error
        _reraise_thread_error(err)
        return []


def is_parsed(parsed: Sequence[Any], latex: str | None = None) -> bool:
    """Whether math-verify read the answer as mathematics, not only kept it as a string.

    A text answer (`answer_forms.text_answer`: "North", "\\text{Tuesday}") counts as read.
    """
    if latex is not None and answer_forms.text_answer(latex) is not None:
        return True
    return any(not isinstance(p, str) for p in parsed)


def verify_math(reference: list[Any], answer: list[Any], limit: int = VERIFY_TIMEOUT_S) -> bool:
    """`math_verify.verify(reference, answer)`: any pair of their readings is equal.

    Each pair is verified on its own so that a timeout raises `_Timeout` instead of
    passing for "not equal"; an error in one pair counts as "not equal", as in `verify`.
    An equality that `answer_forms.spurious` knows to be a false positive is not one. A
    set and a relation in one variable compare as sets either way round ("(1, 4]" and
    "1 < x \\le 4"), not only with the set as the answer.
    """
    timed_out = False
    for r, a in itertools.product(reference, answer):
        try:
            if verify(
                r, a, allow_set_relation_comp=True, timeout_seconds=limit, raise_on_error=True
            ):
                return not answer_forms.spurious(reference, answer)
        except TimeoutException:
            timed_out = True
        except Exception as err:
            _reraise_thread_error(err)
    if timed_out:
        raise _Timeout()
    return False


Parse = tuple[list[Any], complex | None]
"""math-verify's reading of an answer, and its value when it is one plain number."""


def _parse_chunk(strings: Sequence[str], limit: int) -> list[tuple[str, Parse | None]]:
    """Each string with its parse and value, or None when parsing timed out."""
    out: list[tuple[str, Parse | None]] = []
    for s in strings:
        try:
            parsed = parse_math(s, limit)
        except _Timeout:
            out.append((s, None))
        else:
            out.append((s, (parsed, numeric_value(parsed))))
    return out


@timeout(VERIFY_TIMEOUT_S)
def _evaluate(expr: sympy.Expr) -> complex:
    return complex(expr.evalf(30))


def numeric_value(parsed: Sequence[Any]) -> complex | None:
    """The value of an answer that is one plain number, such as 12, 0.5 or 3\\sqrt{2}.

    None for anything else: free symbols, sets, tuples, relations, matrices, percentages
    (math-verify lets 10\\% equal 10), infinities, or a value that takes too long to get.
    """
    exprs = [p for p in parsed if not isinstance(p, str)]
    if len(exprs) != 1:
        return None
    expr = exprs[0]
    if (
        not isinstance(expr, sympy.Expr)
        or getattr(expr, "is_Matrix", False)
        or expr.free_symbols
        or expr.has(sympy.UnevaluatedExpr)
    ):
        return None
    try:
        value = _evaluate(expr)
    except (TypeError, ValueError, ArithmeticError, TimeoutException):
        return None
    return value if cmath.isfinite(value) else None


def numerically_apart(
    parsed_a: Sequence[Any], parsed_b: Sequence[Any], a: complex | None, b: complex | None
) -> bool:
    """Whether two plain numbers differ so much that math-verify cannot call them equal.

    math-verify finds two numbers equal when their strings match, when they agree to
    `float_rounding` (6) decimals, or when their difference simplifies to zero; values
    apart by more than 1e-4 relative fail all three. This skips the costly `simplify` of,
    say, 70\\sqrt{2} - 916, without changing any result.
    """
    if a is None or b is None:
        return False
    if {p for p in parsed_a if isinstance(p, str)} & {p for p in parsed_b if isinstance(p, str)}:
        return False
    return abs(a - b) > 1e-4 * max(1.0, abs(a), abs(b))


def _verify_chunk(
    items: Sequence[tuple[tuple[str, str], list[Any], list[Any]]], limit: int
) -> list[tuple[tuple[str, str], bool | None]]:
    """Each pair with whether it is equivalent, or None when verifying timed out."""
    out: list[tuple[tuple[str, str], bool | None]] = []
    for pair, parsed_a, parsed_b in items:
        try:
            out.append((pair, verify_math(parsed_a, parsed_b, limit)))
        except _Timeout:
            out.append((pair, None))
    return out


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class MathJudge:
    """Parses and compares MATH answers once each, with a persistent cache.

    A parse or comparison that runs out of time is tried once more with `RETRY_FACTOR`
    times the limit (a busy machine can be slow); if it fails again the answer counts as
    unparseable, or the pair as not equal, as math-verify would have it, but the result
    is logged and not cached, so a later run tries again. Use as a context manager: the
    worker pool is closed and new results are added to the cache file on exit.
    """

    def __init__(self, cache: Path | None = None, processes: int | None = None) -> None:
        self.cache = Path(cache) if cache is not None else None
        self.processes = processes or len(os.sched_getaffinity(0))
        self._pool: Any = None
        self._parsed: dict[str, list[Any]] = {}
        self._values: dict[str, complex | None] = {}
        self._parses: dict[str, bool] = {}
        self._equal: dict[tuple[str, str], bool] = {}
        self._new_parses: dict[str, bool] = {}
        self._new_equal: dict[tuple[str, str], bool] = {}
        self.stats: Counter[str] = Counter()
        if self.cache is not None:
            self._parses, self._equal = _load_cache(self.cache)
            self.stats["cached_results"] = len(self._parses) + len(self._equal)

    def __enter__(self) -> MathJudge:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool.join()
            self._pool = None
        if self.cache is not None:
            _save_cache(self.cache, self._new_parses, self._new_equal)

    def _map(
        self, func: Callable[[Sequence[Any], int], list[Any]], items: Sequence[Any], limit: int
    ) -> Iterator[Any]:
        """Apply `func` to chunks of `items`, here or in worker processes."""
        if not items:
            return
        parallel = self.processes > 1 and len(items) >= PARALLEL_FROM
        if not parallel and _in_main_thread():
            yield from func(items, limit)
            return
        if self._pool is None:
            self._pool = multiprocessing.get_context("fork").Pool(self.processes)
        size = max(1, min(64, len(items) // (8 * self.processes)))
        work = functools.partial(func, limit=limit)
        for done in self._pool.imap_unordered(work, _chunks(items, size)):
            yield from done

    def _run(
        self, func: Callable[[Sequence[Any], int], list[Any]], items: Sequence[Any], limit: int
    ) -> list[tuple[Any, Any]]:
        """`_map`, trying items that time out once more with a longer limit.

        Items and results both start with their key; a result of None is a timeout.
        """
        done, late = [], set()
        for key, result in self._map(func, items, limit):
            if result is None:
                late.add(key)
            else:
                done.append((key, result))
        if late:
            retry = [item for item in items if _key(item) in late]
            for key, result in self._map(func, retry, limit * RETRY_FACTOR):
                done.append((key, result))
                if result is None:
                    self.stats["timeouts"] += 1
                    logger.warning("math-verify timed out twice on %r; not cached", key)
        return done

    def _ensure_parsed(self, strings: Iterable[str]) -> None:
        todo = sorted({s for s in strings if s not in self._parsed})
        for s, result in self._run(_parse_chunk, todo, PARSE_TIMEOUT_S):
            self._parsed[s], self._values[s] = result or ([], None)
            if s not in self._parses:
                self._parses[s] = result is not None and is_parsed(self._parsed[s], s)
                if result is not None:
                    self._new_parses[s] = self._parses[s]
        self.stats["parsed"] += len(todo)

    def parses(self, strings: Iterable[str]) -> dict[str, bool]:
        """Whether each string parses as mathematics."""
        strings = set(strings)
        self._ensure_parsed(s for s in strings if s not in self._parses)
        return {s: self._parses[s] for s in strings}

    def equivalent(self, pairs: Iterable[tuple[str, str]]) -> dict[tuple[str, str], bool]:
        """`verify(reference, answer)` for each distinct pair; identical strings are equal."""
        pairs = set(pairs)
        todo = sorted(p for p in pairs if p not in self._equal and p[0] != p[1])
        self.stats["pairs"] += len(pairs)
        self.stats["identical_pairs"] += sum(a == b for a, b in pairs)
        self._ensure_parsed({s for pair in todo for s in pair})
        items, apart = [], 0
        for a, b in todo:
            parsed_a, parsed_b = self._parsed[a], self._parsed[b]
            same = answer_forms.same_text(a, b)
            if same is not None:
                self._equal[a, b] = self._new_equal[a, b] = same
                self.stats["text_answers"] += 1
                continue
            if numerically_apart(parsed_a, parsed_b, self._values[a], self._values[b]):
                self._equal[a, b] = self._new_equal[a, b] = False
                apart += 1
            else:
                items.append(((a, b), parsed_a, parsed_b))
        self.stats["numerically_apart"] += apart
        self.stats["verified"] += len(items)
        for pair, same in self._run(_verify_chunk, items, VERIFY_TIMEOUT_S):
            self._equal[pair] = bool(same)
            if same is not None:
                self._new_equal[pair] = same
        return {(a, b): a == b or self._equal[a, b] for a, b in pairs}


def _key(item: Any) -> Any:
    """What a work item is known by in its result: the string, or the pair of a comparison."""
    return item if isinstance(item, str) else item[0]


def _load_cache(path: Path) -> tuple[dict[str, bool], dict[tuple[str, str], bool]]:
    if not path.exists():
        return {}, {}
    try:
        df = pl.read_parquet(path).filter(
            (pl.col("method") == METHOD) & (pl.col("answer_type") == MATH)
        )
    except Exception as err:  # a damaged cache costs time, never correctness
        logger.warning("ignoring the equivalence cache %s: %s", path, err)
        return {}, {}
    single = df.filter(pl.col("b").is_null())
    pairs = df.filter(pl.col("b").is_not_null())
    return (
        dict(zip(single["a"], single["result"], strict=True)),
        dict(zip(zip(pairs["a"], pairs["b"], strict=True), pairs["result"], strict=True)),
    )


def _save_cache(path: Path, parses: dict[str, bool], equal: dict[tuple[str, str], bool]) -> None:
    """Merge new results into the cache file, under a lock, through an atomic rename."""
    if not parses and not equal:
        return
    new = pl.DataFrame(
        {
            "a": [*parses, *(a for a, _ in equal)],
            "b": [None] * len(parses) + [b for _, b in equal],
            "answer_type": MATH,
            "result": [*parses.values(), *equal.values()],
            "method": METHOD,
        },
        schema=_CACHE_SCHEMA,
    )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path.with_name(path.name + ".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                old = pl.read_parquet(path).filter(pl.col("method") == METHOD)
                new = pl.concat([old.select(list(_CACHE_SCHEMA)).cast(_CACHE_SCHEMA), new])
            except FileNotFoundError:
                pass
            except Exception as err:
                logger.warning("replacing the unreadable equivalence cache %s: %s", path, err)
            new = new.unique(subset=["a", "b", "answer_type", "method"], keep="first")
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            os.close(fd)
            try:
                new.write_parquet(tmp)
                os.replace(tmp, path)
            finally:
                Path(tmp).unlink(missing_ok=True)
    except Exception as err:  # the results are in hand; only the next run loses them
        logger.warning("could not write the equivalence cache %s: %s", path, err)


# --------------------------------------------------------------------------- extraction


def _extract_frame(rows: pl.DataFrame, choices: pl.DataFrame) -> pl.DataFrame:
    """Add `answer` and `missing_reason` to rows with answer_text, answer_type, n_choices.

    Each distinct text is extracted once; only choice-text matching depends on the question.
    """
    rows = rows.with_columns(pl.col("answer_text").fill_null(""))
    keys = rows.select("answer_text", "answer_type", "n_choices").unique()
    found = [
        extraction.extract_letter(text, n)
        if kind == MULTIPLE_CHOICE
        else extraction.extract_math(text)
        for text, kind, n in keys.iter_rows()
    ]
    keys = keys.with_columns(
        pl.Series("answer", [f.answer for f in found], dtype=pl.String),
        pl.Series("missing_reason", [f.missing_reason for f in found], dtype=pl.String),
    )
    rows = rows.join(keys, on=["answer_text", "answer_type", "n_choices"], how="left")

    fallback = (pl.col("answer_type") == MULTIPLE_CHOICE) & pl.col("missing_reason").is_in(
        [extraction.NO_ANSWER, extraction.OUT_OF_RANGE]
    )
    retry = rows.filter(fallback).select("question_id", "answer_text").unique()
    wanted = {
        qid: [extraction.normalise_choice(c) for c in options or []]
        for qid, options in choices.join(retry.select("question_id").unique(), on="question_id")
        .select("question_id", "choices")
        .iter_rows()
    }
    phrases = {text: extraction.answer_phrases(text) for text in retry["answer_text"].unique()}
    letters = [
        extraction.letter_of_phrases(phrases[text], wanted.get(qid, []))
        for qid, text in retry.iter_rows()
    ]
    retry = retry.with_columns(pl.Series("choice_letter", letters, dtype=pl.String))
    rows = rows.join(retry, on=["question_id", "answer_text"], how="left")
    matched = fallback & pl.col("choice_letter").is_not_null()
    return rows.with_columns(
        pl.when(matched).then(pl.col("choice_letter")).otherwise(pl.col("answer")).alias("answer"),
        pl.when(matched)
        .then(pl.lit(None, dtype=pl.String))
        .otherwise(pl.col("missing_reason"))
        .alias("missing_reason"),
    ).drop("choice_letter")


def _mark_unparseable(rows: pl.DataFrame, judge: MathJudge) -> pl.DataFrame:
    """MATH answers that math-verify cannot read become missing ("unparseable")."""
    math_answers = rows.filter((pl.col("answer_type") == MATH) & pl.col("answer").is_not_null())
    ok = judge.parses(math_answers["answer"].unique().to_list())
    bad = [s for s, parses in ok.items() if not parses]
    unparseable = (pl.col("answer_type") == MATH) & pl.col("answer").is_in(bad)
    return rows.with_columns(
        pl.when(unparseable)
        .then(pl.lit(None, dtype=pl.String))
        .otherwise(pl.col("answer"))
        .alias("answer"),
        pl.when(unparseable)
        .then(pl.lit(extraction.UNPARSEABLE))
        .otherwise(pl.col("missing_reason"))
        .alias("missing_reason"),
    )


def _mark_cut(rows: pl.DataFrame, finish: str) -> pl.DataFrame:
    cut = (pl.col(finish) == "length") & pl.col("missing_reason").is_in(
        [extraction.NO_ANSWER, extraction.UNPARSEABLE]
    )
    return rows.with_columns(
        pl.when(cut)
        .then(pl.lit(extraction.CUT))
        .otherwise(pl.col("missing_reason"))
        .alias("missing_reason")
    )


# --------------------------------------------------------------------------- grading


def _check_inputs(questions: pl.DataFrame, elicited: pl.DataFrame) -> None:
    duplicated = questions.filter(pl.col("question_id").is_duplicated())
    if len(duplicated):
        raise ValueError(f"questions: question_id {duplicated['question_id'][0]!r} repeats")
    types = set(questions["answer_type"].unique().to_list()) - set(ANSWER_TYPES)
    if types:
        raise ValueError(f"questions: unknown answer_type {sorted(map(str, types))}")
    kinds = set(elicited["kind"].unique().to_list()) - set(KINDS)
    if kinds:
        raise ValueError(f"elicited: unknown kind {sorted(map(str, kinds))}, expected {KINDS}")
    unknown = elicited.join(questions.select("question_id"), on="question_id", how="anti")
    if len(unknown):
        raise ValueError(
            f"elicited: {unknown['question_id'].n_unique()} question_id(s) not in the "
            f"questions table, e.g. {unknown['question_id'][0]!r}"
        )
    key = ["question_id", "kind", "level", "sample"]
    repeated = elicited.group_by(key).len().filter(pl.col("len") > 1)
    if len(repeated):
        raise ValueError(f"elicited: several answers for {repeated.select(key).row(0, named=True)}")


def _kind_columns(answers: pl.DataFrame, kind: str, key: list[str]) -> pl.DataFrame:
    return answers.filter(pl.col("kind") == kind).select(
        *key,
        pl.col("answer").alias(f"{kind}_answer"),
        pl.col("missing_reason").alias(f"{kind}_missing_reason"),
    )


def _assemble(answers: pl.DataFrame, meta: pl.DataFrame) -> pl.DataFrame:
    """One row per resample with the answers of its question and prefix beside it."""
    graded = (
        _kind_columns(answers, "resample", ["question_id", "level", "sample"])
        .join(meta, on="question_id", how="left")
        .join(_kind_columns(answers, "orig", ["question_id"]), on="question_id", how="left")
        .join(_kind_columns(answers, "direct", ["question_id"]), on="question_id", how="left")
        .join(
            _kind_columns(answers, "stump", ["question_id", "level"]),
            on=["question_id", "level"],
            how="left",
        )
    )
    not_elicited = [
        pl.when(pl.col(f"{k}_answer").is_null() & pl.col(f"{k}_missing_reason").is_null())
        .then(pl.lit(extraction.NOT_ELICITED))
        .otherwise(pl.col(f"{k}_missing_reason"))
        .alias(f"{k}_missing_reason")
        for k in ("orig", "stump", "direct")
    ]
    return graded.with_columns(not_elicited)


def _gold_reasons(meta: pl.DataFrame, judge: MathJudge) -> pl.DataFrame:
    """`meta` with `gold_missing_reason`: "gold_unparseable" for a MATH gold that
    math-verify cannot read, whose flags are then null rather than False."""
    golds = meta.filter(pl.col("answer_type") == MATH)["gold"].drop_nulls().unique().to_list()
    bad = [g for g, ok in judge.parses(golds).items() if not ok]
    for qid in meta.filter((pl.col("answer_type") == MATH) & pl.col("gold").is_in(bad))[
        "question_id"
    ].head(5):
        logger.warning("question %s: math-verify cannot read the gold; its flags are null", qid)
    return meta.with_columns(
        pl.when((pl.col("answer_type") == MATH) & pl.col("gold").is_in(bad))
        .then(pl.lit(extraction.GOLD_UNPARSEABLE))
        .otherwise(pl.lit(None, dtype=pl.String))
        .alias("gold_missing_reason")
    )


def math_pairs(graded: pl.DataFrame) -> pl.DataFrame:
    """The distinct (reference, answer) pairs of MATH rows that the flags compare, with
    the dataset and the number of flags each decides (columns dataset, a, b, n_flags)."""
    usable = pl.col("gold_missing_reason").is_null()
    parts = [
        graded.filter((pl.col("answer_type") == MATH) & (usable if ref == "gold" else True))
        .select("dataset", pl.col(ref).alias("a"), pl.col(ans).alias("b"))
        .drop_nulls()
        for _, ref, ans in COMPARISONS
    ]
    schema = {"dataset": pl.String, "a": pl.String, "b": pl.String}
    return (
        pl.concat([p.cast(schema) for p in parts])  # type: ignore[arg-type]
        .group_by("dataset", "a", "b")
        .agg(pl.len().cast(pl.Int64).alias("n_flags"))
        .sort("dataset", "a", "b")
    )


def _add_flags(graded: pl.DataFrame, equal: dict[tuple[str, str], bool]) -> pl.DataFrame:
    """The flags of `COMPARISONS`; `equal` holds math-verify's call on every MATH pair."""
    is_math = pl.col("answer_type") == MATH
    table = pl.DataFrame(
        {"a": [a for a, _ in equal], "b": [b for _, b in equal], "same": list(equal.values())},
        schema={"a": pl.String, "b": pl.String, "same": pl.Boolean},
    )
    for flag, ref, ans in COMPARISONS:
        graded = graded.join(
            table.rename({"a": ref, "b": ans, "same": f"_{flag}"}), on=[ref, ans], how="left"
        ).with_columns(
            pl.when(
                pl.col(ref).is_null()
                | pl.col(ans).is_null()
                | (pl.col("gold_missing_reason").is_not_null() if ref == "gold" else False)
            )
            .then(pl.lit(None, dtype=pl.Boolean))
            .when(is_math)
            .then(pl.col(f"_{flag}"))
            .otherwise(pl.col(ref) == pl.col(ans))
            .alias(flag)
        )
    return graded.drop([f"_{flag}" for flag, _, _ in COMPARISONS]).sort(
        "question_id", "level", "sample"
    )


def _missing_summary(answers: pl.DataFrame, graded: pl.DataFrame) -> pl.DataFrame:
    found = answers.filter(pl.col("missing_reason").is_not_null()).select(
        "dataset", "kind", "missing_reason"
    )
    gaps = [
        graded.filter(pl.col(f"{kind}_missing_reason") == extraction.NOT_ELICITED)
        .unique(subset=key)
        .select(
            "dataset",
            pl.lit(kind).alias("kind"),
            pl.col(f"{kind}_missing_reason").alias("missing_reason"),
        )
        for kind, key in (
            ("orig", ["question_id"]),
            ("direct", ["question_id"]),
            ("stump", ["question_id", "level"]),
        )
    ]
    golds = (
        graded.filter(pl.col("gold_missing_reason").is_not_null())
        .unique(subset="question_id")
        .select("dataset", pl.lit("gold").alias("kind"), pl.col("gold_missing_reason"))
        .rename({"gold_missing_reason": "missing_reason"})
    )
    return (
        pl.concat([found, *gaps, golds])
        .group_by("dataset", "kind", "missing_reason")
        .agg(pl.len().cast(pl.Int64).alias("count"))
        .sort("dataset", "kind", "missing_reason")
    )


def _log_missing(answers: pl.DataFrame, summary: pl.DataFrame) -> None:
    elicited = dict(answers.group_by("kind").len().iter_rows())
    for kind in KINDS:
        rows = summary.filter(pl.col("kind") == kind)
        by_reason = dict(
            rows.group_by("missing_reason")
            .agg(pl.col("count").sum())
            .sort("missing_reason")
            .iter_rows()
        )
        total = elicited.get(kind, 0) + by_reason.get(extraction.NOT_ELICITED, 0)
        detail = ", ".join(f"{reason} {n}" for reason, n in by_reason.items())
        logger.info(
            "%s: %d of %d answers missing%s",
            kind,
            sum(by_reason.values()),
            total,
            f" ({detail})" if detail else "",
        )


def write_summary_csv(summary: pl.DataFrame, path: str | os.PathLike[str]) -> None:
    """Write the missing-answer counts (`tables.MISSING_SUMMARY`) as CSV, atomically."""
    path = Path(path)
    table = pl.from_arrow(tables.conform(summary, tables.MISSING_SUMMARY, str(path)))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        table.write_csv(tmp)  # type: ignore[union-attr]
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


@dataclass(frozen=True)
class Grading:
    """What grading one elicited table gives (`grade_and_audit`)."""

    graded: pl.DataFrame  # tables.GRADED
    missing: pl.DataFrame  # tables.MISSING_SUMMARY
    audit: pl.DataFrame  # audit.AUDIT_COLUMNS: pairs the two MATH judges disagree on
    audit_rates: pl.DataFrame  # audit.RATE_COLUMNS, one row per dataset with MATH pairs


def grade_and_audit(
    questions: pl.DataFrame,
    elicited: pl.DataFrame,
    *,
    cache: Path | None = None,
    processes: int | None = None,
) -> Grading:
    """Grade, and audit every MATH comparison with a second judge (`critical_windows.audit`).

    `questions` follows `tables.QUESTIONS`, `elicited` follows `tables.ELICITED`. The graded
    table has one row per resample, with the answers of its orig, stump and direct beside it.
    An answer that cannot be extracted is null with a `*_missing_reason`
    (`extraction.MISSING_REASONS`), and every flag that involves it is null; so is every
    flag against a MATH gold that math-verify cannot read (`gold_missing_reason`). `cache`
    is a Parquet file of math-verify results kept across runs; `processes` defaults to the
    CPUs this process may use.
    """
    start = time.perf_counter()
    _check_inputs(questions, elicited)
    meta = questions.select(
        "question_id",
        "dataset",
        "answer_type",
        pl.when(pl.col("answer_type") == MULTIPLE_CHOICE)
        .then(pl.col("gold").str.strip_chars().str.to_uppercase())
        .otherwise(pl.col("gold"))
        .alias("gold"),
    )
    shape = questions.select(
        "question_id",
        pl.col("choices").list.len().fill_null(0).cast(pl.Int32).alias("n_choices"),
    )
    rows = elicited.join(meta, on="question_id", how="left").join(
        shape, on="question_id", how="left"
    )
    answers = _extract_frame(rows, questions.select("question_id", "choices"))
    with MathJudge(cache, processes) as judge:
        answers = _mark_cut(_mark_unparseable(answers, judge), "answer_finish_reason")
        assembled = _assemble(answers, _gold_reasons(meta, judge))
        pairs = math_pairs(assembled)
        equal = judge.equivalent(pairs.select("a", "b").unique().iter_rows())
        graded = _add_flags(assembled, equal)
    summary = _missing_summary(answers, graded)
    _log_missing(answers, summary)
    disagreeing = audit.audit(pairs, equal)
    rates = audit.rates(pairs, disagreeing)
    for dataset, n, k, rate in rates.iter_rows():
        logger.info(
            "%s: math-verify and the MATH normalised string comparison disagree on %d of "
            "%d distinct pairs (%.3f)",
            dataset,
            k,
            n,
            rate,
        )
    logger.info(
        "graded %d elicited answers into %d rows in %.1f s; math-verify: %s",
        len(elicited),
        len(graded),
        time.perf_counter() - start,
        ", ".join(f"{k} {v}" for k, v in sorted(judge.stats.items())),
    )
    return Grading(
        graded.select(tables.GRADED.names),
        summary.select(tables.MISSING_SUMMARY.names),
        disagreeing,
        rates,
    )


def grade(
    questions: pl.DataFrame,
    elicited: pl.DataFrame,
    *,
    cache: Path | None = None,
    processes: int | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The graded table (`tables.GRADED`) and the missing-answer counts
    (`tables.MISSING_SUMMARY`) of `grade_and_audit`."""
    result = grade_and_audit(questions, elicited, cache=cache, processes=processes)
    return result.graded, result.missing


# --------------------------------------------------------------------------- re-grading CLI


class InputError(ValueError):
    """A line of a re-grading input is not a gradable record."""


def _check_record(record: Any) -> dict[str, Any]:
    if not isinstance(record, dict):
        raise InputError("expected a JSON object")
    kind = record.get("answer_type")
    if kind not in ANSWER_TYPES:
        raise InputError(f"answer_type must be one of {list(ANSWER_TYPES)}, got {kind!r}")
    if not isinstance(record.get("gold"), str) or not record["gold"].strip():
        raise InputError("gold must be a non-empty string")
    if "response" not in record or not isinstance(record["response"], str | None):
        raise InputError("response must be a string (the raw model text)")
    if kind == MULTIPLE_CHOICE:
        n = record.get("n_choices")
        if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= len(extraction.LETTERS):
            raise InputError(f"n_choices must be an integer from 1 to 26, got {n!r}")
        if record["gold"].strip().upper() not in extraction.LETTERS[:n]:
            raise InputError(f"gold {record['gold']!r} is not one of the {n} choice letters")
    choices = record.get("choices", [])
    if not isinstance(choices, list) or not all(isinstance(c, str) for c in choices):
        raise InputError("choices, when given, must be a list of strings")
    return record


def regrade(
    records: Sequence[dict[str, Any]],
    *,
    cache: Path | None = None,
    processes: int | None = None,
) -> list[dict[str, Any]]:
    """Each record with `extracted`, `correct` and `missing_reason` added.

    A record has `answer_type`, `gold`, `response`, and for multiple choice `n_choices`
    (optionally `choices`, the choice texts); an optional `finish_reason` of "length" turns
    no_answer/unparseable into cut_by_max_tokens. A MATH gold that math-verify cannot read
    gives `correct` null with `missing_reason` "gold_unparseable" (the extracted answer is
    still reported).
    """
    found: list[Extraction] = []
    for r in records:
        if r["answer_type"] == MULTIPLE_CHOICE:
            found.append(
                extraction.extract_choice(r["response"], r["n_choices"], r.get("choices", []))
            )
        else:
            found.append(extraction.extract_math(r["response"]))
    with MathJudge(cache, processes) as judge:
        math_answers = {
            f.answer
            for f, r in zip(found, records, strict=True)
            if r["answer_type"] == MATH and f.answer is not None
        }
        math_golds = {r["gold"] for r in records if r["answer_type"] == MATH}
        parses = judge.parses(math_answers | math_golds)
        found = [
            Extraction(None, extraction.UNPARSEABLE)
            if r["answer_type"] == MATH and f.answer is not None and not parses[f.answer]
            else f
            for f, r in zip(found, records, strict=True)
        ]
        equal = judge.equivalent(
            (r["gold"], f.answer)
            for f, r in zip(found, records, strict=True)
            if r["answer_type"] == MATH and f.answer is not None and parses[r["gold"]]
        )
    out = []
    for f, r in zip(found, records, strict=True):
        reason = extraction.missing_after_finish(f.missing_reason, r.get("finish_reason"))
        if r["answer_type"] == MATH and not parses[r["gold"]]:
            correct, reason = None, extraction.GOLD_UNPARSEABLE
        elif f.answer is None:
            correct = None
        elif r["answer_type"] == MATH:
            correct = equal[r["gold"], f.answer]
        else:
            correct = f.answer == r["gold"].strip().upper()
        out.append({**r, "extracted": f.answer, "correct": correct, "missing_reason": reason})
    return out


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Read and check a re-grading input; errors name the file and line."""
    records = []
    with open(path, encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                records.append(_check_record(json.loads(line)))
            except json.JSONDecodeError as err:
                raise InputError(f"{path}, line {number}: not valid JSON ({err.msg})") from err
            except InputError as err:
                raise InputError(f"{path}, line {number}: {err}") from err
    return records


def main(argv: Sequence[str] | None = None) -> int:
    """critical-windows-grade: re-grade JSON lines of raw model answers."""
    parser = argparse.ArgumentParser(
        prog="critical-windows-grade",
        description="Re-grade model answers. Each input line is a JSON object with "
        "answer_type ('multiple_choice' or 'math'), gold, response, and for multiple choice "
        "n_choices; each is written back with extracted, correct and missing_reason.",
    )
    parser.add_argument("--in", dest="input", type=Path, required=True, help="input JSON lines")
    parser.add_argument("--out", type=Path, required=True, help="output JSON lines")
    parser.add_argument("--cache", type=Path, help="Parquet cache of math-verify results")
    parser.add_argument("--processes", type=int, help="worker processes (default: all CPUs)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        records = read_jsonl(args.input)
    except (InputError, OSError) as err:
        print(f"critical-windows-grade: {err}", file=sys.stderr)
        return 2
    graded = regrade(records, cache=args.cache, processes=args.processes)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=args.out.parent, prefix=f".{args.out.name}.", suffix=".tmp")
    with contextlib.ExitStack() as stack:
        stack.callback(Path(tmp).unlink, missing_ok=True)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            for record in graded:
                out.write(json.dumps(record, ensure_ascii=False) + "\n")
        os.replace(tmp, args.out)
    reasons = Counter(r["missing_reason"] for r in graded if r["missing_reason"])
    right = sum(r["correct"] is True for r in graded)
    logger.info(
        "%d answers: %d correct, %d missing %s",
        len(graded),
        right,
        sum(reasons.values()),
        dict(reasons),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
