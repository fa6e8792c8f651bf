"""The command-line grader `critical-windows-grade`: grades a JSONL file of answers, or
regrades a run's tables."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from critical_windows.catalog import MATH, MULTIPLE_CHOICE
from critical_windows.grading import extraction
from critical_windows.grading.equivalence import MathJudge
from critical_windows.grading.extraction import Extraction
from critical_windows.grading.grader import ANSWER_TYPES
from critical_windows.io.atomic import write_atomic

logger = logging.getLogger(__name__)


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
    write_atomic(args.out, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in graded))
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
