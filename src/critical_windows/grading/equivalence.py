"""Mathematical equivalence of MATH answers through math-verify, with a persistent cache.

Answers compare by `verify(parse(gold), parse(answer))`, gold or reference first, never by
string equality. Parsing is the expensive part, so each distinct string is parsed once, each
distinct pair is verified once, the work is spread over worker processes when there is a
lot of it, and results persist in a small Parquet cache.

math-verify bounds each parse and each comparison with `signal.alarm`, which only works in
the main thread of a process. Work therefore runs in this process only when it is small and
this is the main thread; otherwise it runs in forked workers, whose only thread is their
main one. Fork (not spawn) because spawn re-runs the `__main__` module in every worker, and
under Snakemake that module is the rule's script.
"""

from __future__ import annotations

import cmath
import fcntl
import functools
import itertools
import logging
import multiprocessing
import os
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from importlib.metadata import version
from pathlib import Path
from typing import Any

import polars as pl
import sympy
from math_verify import parse, verify
from math_verify.errors import TimeoutException
from math_verify.utils import timeout

from critical_windows.catalog import GRADING_PARALLEL_FROM, MATH
from critical_windows.grading import answer_forms
from critical_windows.io.atomic import replacing

logger = logging.getLogger(__name__)

Parse = tuple[list[Any], complex | None]

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

PARALLEL_FROM = GRADING_PARALLEL_FROM
"""Fewer strings or pairs than this are handled in this process (when it may)."""

_CACHE_SCHEMA = {
    "a": pl.String,
    "b": pl.String,  # null: the row records whether `a` parses
    "answer_type": pl.String,
    "result": pl.Boolean,
    "method": pl.String,
}


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
            with replacing(path) as tmp:
                new.write_parquet(tmp)
    except Exception as err:  # the results are in hand; only the next run loses them
        logger.warning("could not write the equivalence cache %s: %s", path, err)
