"""Benchmarks as one normalised questions table (`tables.QUESTIONS`).

Two sources give the same table: the files shipped in `resources/datasets` ("bundled") and the
Hugging Face datasets they were checked against ("hub"). Each source is first read into records
in the Hugging Face column layout of its benchmark, and one normaliser per benchmark turns such a
record into a question row, so both sources share every rule about text, choices and gold.

A malformed source row either stops the run with a `DatasetError` naming the dataset, file and
row, or is left out and returned in the rejects table (`tables.REJECTS`), as `bad_rows` says.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import polars as pl
import pyarrow as pa

from critical_windows.catalog import ANSWER_TYPES, DATASETS, LETTERS, TASKS
from critical_windows.grading import golds
from critical_windows.io import tables

SOURCES = ("bundled", "hub")
BAD_ROWS = ("error", "skip")

MATH_SUBJECTS = (
    "algebra",
    "counting_and_probability",
    "geometry",
    "intermediate_algebra",
    "number_theory",
    "prealgebra",
    "precalculus",
)
"""The configs of EleutherAI/hendrycks_math, in the order of the MATH test split."""


class DatasetError(ValueError):
    """A benchmark cannot be read: unknown name, missing file or malformed row."""


class RowError(ValueError):
    """One malformed source row; the message is the reason, without the place."""


class SourceRow(NamedTuple):
    """One data row of a source, as a record in the Hugging Face layout of its benchmark.

    `record` is the `RowError` instead when the row could not even be parsed into a record.
    `row` is the 0-based data row in `file` (for MMLU: in the subject's file).
    """

    record: Mapping[str, Any] | RowError
    file: str
    row: int


def set_aside(
    err: RowError, dataset: str, source: SourceRow, bad_rows: str, rejects: list[dict[str, Any]]
) -> None:
    """The `bad_rows` policy for a malformed row: stop naming it, or record it as a reject."""
    if bad_rows == "error":
        raise DatasetError(f"dataset '{dataset}': {source.file} row {source.row}: {err}") from None
    rejects.append({"dataset": dataset, "file": source.file, "row": source.row, "reason": str(err)})


# --- small helpers -------------------------------------------------------------------------


def _digest(*parts: object) -> str:
    """A hex digest of `parts`: the same on every machine and Python version."""
    return hashlib.sha256("\x1f".join(map(str, parts)).encode()).hexdigest()


def _text(record: Mapping[str, Any], field: str) -> str:
    value = record.get(field)
    if not isinstance(value, str):
        raise RowError(f"field '{field}' is missing or not text")
    return value.strip()


def _texts(record: Mapping[str, Any], field: str) -> list[str]:
    value = record.get(field)
    if not isinstance(value, Sequence) or isinstance(value, str):
        raise RowError(f"field '{field}' is missing or not a list")
    if not all(isinstance(v, str) for v in value):
        raise RowError(f"field '{field}' holds something other than text")
    return [v.strip() for v in value]


def _index(record: Mapping[str, Any], field: str) -> int:
    value = record.get(field)
    if not isinstance(value, int) or isinstance(value, bool):
        raise RowError(f"field '{field}' is missing or not an integer")
    return value


def _mapping(record: Mapping[str, Any], field: str) -> Mapping[str, Any]:
    value = record.get(field)
    if not isinstance(value, Mapping):
        raise RowError(f"field '{field}' is missing or not a mapping")
    return value


def _expect_choices(choices: Sequence[str], low: int, high: int | None = None) -> None:
    high = low if high is None else high
    if not low <= len(choices) <= high:
        expected = str(low) if low == high else f"{low} to {high}"
        raise RowError(f"expected {expected} choices, found {len(choices)}")


def _letter_index(letter: str, n_choices: int) -> int:
    """The position of a gold `letter` among `n_choices` lettered choices."""
    index = LETTERS.find(letter.strip().upper()) if letter.strip() else -1
    if not 0 <= index < n_choices:
        raise RowError(
            f"gold letter {letter!r} is not among the choices A-{LETTERS[n_choices - 1]}"
        )
    return index


def format_problem(question: str, choices: Sequence[str]) -> str:
    """The text shown to the model: the question, a blank line, one `(A) text` line per choice."""
    if not choices:
        return question
    lines = [f"({letter}) {choice}" for letter, choice in zip(LETTERS, choices, strict=False)]
    return question + "\n\n" + "\n".join(lines)


def shuffle_order(n: int, seed: int, question_id: str) -> list[int]:
    """A permutation of range(n) that depends only on `seed` and `question_id`.

    Each question gets its own order, so it does not change with the questions drawn.
    """
    return sorted(range(n), key=lambda i: _digest(seed, question_id, i))


def draw(question_ids: Iterable[str], n: int | None, seed: int) -> list[str]:
    """`n` of `question_ids` chosen with `seed`, sorted; all of them when `n` is None or larger.

    The ids with the smallest sha256(seed, id) are taken: the draw is the same on every
    machine and Python version, does not depend on the other rows of the split, and a smaller
    `n` draws a subset of a larger one.
    """
    if n is not None and n < 1:
        raise ValueError(f"n must be positive or None, got {n}")
    ids = sorted(set(question_ids))
    if n is None or n >= len(ids):
        return ids
    return sorted(sorted(ids, key=lambda q: _digest(seed, q))[:n])


# --- MATH gold answers ----------------------------------------------------------------------

_BOX = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")


def _box_argument(text: str, start: int) -> str | None:
    """The argument of a box command whose name ends at `start`."""
    rest = text[start:]
    stripped = rest.lstrip()
    if stripped.startswith("{"):
        group = golds.braced(text, start + len(rest) - len(stripped))
        return group[0] if group else None
    if stripped is rest or not stripped:
        return None  # "\boxed\frac..." or a bare "\boxed" at the end
    # "\boxed 5$": the answer runs to the end of the math or of the line.
    return re.split(r"[$\n]", stripped, maxsplit=1)[0].strip() or None


def last_boxed(text: str) -> str | None:
    """The content of the last `\\boxed{...}` (or `\\fbox{...}`, `\\boxed 5`) in `text`."""
    for match in reversed(list(_BOX.finditer(text))):
        content = _box_argument(text, match.end())
        if content is not None:
            return content.strip()
    return None


# --- normalisers: one Hugging Face record -> one question row --------------------------------


def _mc_row(
    dataset: str,
    key: str,
    row: int,
    question: str,
    choices: Sequence[str],
    gold: int,
    subject: str | None = None,
    task: str | None = None,
) -> dict[str, Any]:
    if not question:
        raise RowError("the question is empty")
    for letter, choice in zip(LETTERS, choices, strict=False):
        if not choice:
            raise RowError(f"choice ({letter}) is empty")
    if not 0 <= gold < len(choices):
        raise RowError(f"gold index {gold} is not among the {len(choices)} choices")
    return {
        "question_id": f"{dataset}-{key}",
        "dataset": dataset,
        "problem": format_problem(question, choices),
        "choices": list(choices),
        "gold": LETTERS[gold],
        "answer_type": "multiple_choice",
        "task": TASKS[dataset] if task is None else task,
        "subject": subject,
        "level": None,
        "source_row": row,
    }


def _normalise_math(record: Mapping[str, Any], row: int, seed: int) -> dict[str, Any]:
    problem = _text(record, "problem")
    gold, _ = golds.math_gold(problem, _text(record, "solution"))  # several boxes: golds.py
    if not problem:
        raise RowError("the problem is empty")
    if not gold:
        raise RowError("no \\boxed{...} answer in the solution")
    return {
        "question_id": f"math-{row:04d}",
        "dataset": "math",
        "problem": problem,
        "choices": [],
        "gold": gold,
        "answer_type": "math",
        "task": TASKS["math"],
        "subject": _text(record, "type") or None,
        "level": _text(record, "level") or None,
    }


def _normalise_math500(record: Mapping[str, Any], row: int, seed: int) -> dict[str, Any]:
    """MATH-500 gives the final answer in its own field; the level is an integer 1-5."""
    problem = _text(record, "problem")
    gold = _text(record, "answer")
    if not problem:
        raise RowError("the problem is empty")
    if not gold:
        raise RowError("the answer is empty")
    level = record.get("level")
    if not isinstance(level, int) or isinstance(level, bool):
        raise RowError("field 'level' is missing or not an integer")
    return {
        "question_id": f"math500-{row:04d}",
        "dataset": "math500",
        "problem": problem,
        "choices": [],
        "gold": gold,
        "answer_type": "math",
        "task": TASKS["math500"],
        "subject": _text(record, "subject") or None,
        "level": f"Level {level}",
    }


def _normalise_logiqa(record: Mapping[str, Any], row: int, seed: int) -> dict[str, Any]:
    options = _texts(record, "options")
    _expect_choices(options, 4)
    question = f"{_text(record, 'context')}\n{_text(record, 'query')}".strip()
    return _mc_row("logiqa", f"{row:04d}", row, question, options, _index(record, "correct_option"))


def _normalise_truthfulqa(record: Mapping[str, Any], row: int, seed: int) -> dict[str, Any]:
    """The mc1 targets, shuffled: the source always lists the right answer first."""
    targets = _mapping(record, "mc1_targets")
    choices = _texts(targets, "choices")
    labels = list(targets.get("labels") or [])
    if len(labels) != len(choices):
        raise RowError(f"mc1_targets has {len(choices)} choices but {len(labels)} labels")
    right = [i for i, label in enumerate(labels) if label == 1]
    if len(right) != 1:
        raise RowError(f"mc1_targets must mark exactly one choice right, found {len(right)}")
    _expect_choices(choices, 2, len(LETTERS))
    key = f"{row:04d}"
    order = shuffle_order(len(choices), seed, f"truthfulqa-{key}")
    shuffled = [choices[i] for i in order]
    question = _text(record, "question")
    return _mc_row("truthfulqa", key, row, question, shuffled, order.index(right[0]))


def _normalise_arc(dataset: str) -> Callable[[Mapping[str, Any], int, int], dict[str, Any]]:
    def normalise(record: Mapping[str, Any], row: int, seed: int) -> dict[str, Any]:
        """Choices are lettered by position: the source labels are A-E or the digits 1-4."""
        choices = _mapping(record, "choices")
        texts = _texts(choices, "text")
        labels = [str(label).strip() for label in choices.get("label") or []]
        if len(labels) != len(texts) or len(set(labels)) != len(labels):
            raise RowError(f"choice labels {labels} do not match the {len(texts)} choices")
        _expect_choices(texts, 3, 5)
        answer = str(record.get("answerKey") or "").strip()
        if answer not in labels:
            raise RowError(f"answer key {answer!r} is not among the labels {', '.join(labels)}")
        identifier = _text(record, "id")
        if not identifier:
            raise RowError("the question has no id")
        question = _text(record, "question")
        return _mc_row(dataset, identifier, row, question, texts, labels.index(answer))

    return normalise


def _normalise_mmlu(record: Mapping[str, Any], row: int, seed: int) -> dict[str, Any]:
    subject = _text(record, "subject")
    choices = _texts(record, "choices")
    _expect_choices(choices, 4)
    question = _text(record, "question")
    key = f"{subject}-{row:04d}"
    return _mc_row("mmlu", key, row, question, choices, _index(record, "answer"), subject)


_AQUA_OPTION = re.compile(r"\s*([A-E])\s*\)\s*(.*)", re.DOTALL)


def _normalise_aqua(record: Mapping[str, Any], row: int, seed: int) -> dict[str, Any]:
    """Options come as "A)125": the prefix is checked against the position and dropped."""
    options = _texts(record, "options")
    _expect_choices(options, 5)
    choices = []
    for letter, option in zip(LETTERS, options, strict=False):
        match = _AQUA_OPTION.fullmatch(option)
        if match is None or match.group(1) != letter:
            raise RowError(f"option {option!r} does not start with '{letter})'")
        choices.append(match.group(2).strip())
    gold = _letter_index(_text(record, "correct"), len(choices))
    return _mc_row("aqua_rat", f"{row:04d}", row, _text(record, "question"), choices, gold)


# --- bundled files -> records ---------------------------------------------------------------


def _require(dataset: str, path: Path) -> Path:
    if not path.is_file():
        raise DatasetError(f"dataset '{dataset}': {path} not found")
    return path


def _json_lines(path: Path) -> Iterator[tuple[int, dict[str, Any] | RowError]]:
    """(row, parsed object) per non-blank line; the row counts every line."""
    with path.open(encoding="utf-8") as lines:
        for row, line in enumerate(lines):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as err:
                yield row, RowError(f"unparseable JSON line: {err}")
                continue
            yield row, value if isinstance(value, dict) else RowError("line is not a JSON object")


def _read_math(resources: Path) -> Iterator[SourceRow]:
    path = _require("math", resources / "math" / "test.jsonl")
    for row, record in _json_lines(path):
        yield SourceRow(record, str(path), row)


def _read_math500(resources: Path) -> Iterator[SourceRow]:
    path = _require("math500", resources / "math" / "math500_test.jsonl")
    for row, record in _json_lines(path):
        yield SourceRow(record, str(path), row)


def _read_aqua(resources: Path) -> Iterator[SourceRow]:
    path = _require("aqua_rat", resources / "aqua_rat" / "test.json")
    for row, record in _json_lines(path):
        yield SourceRow(record, str(path), row)


def _arc_record(item: dict[str, Any]) -> dict[str, Any] | RowError:
    """An ARC-V1 JSONL item in the allenai/ai2_arc layout."""
    try:
        question = item["question"]
        choices = question["choices"]
        return {
            "id": item["id"],
            "question": question["stem"],
            "choices": {
                "text": [choice["text"] for choice in choices],
                "label": [choice["label"] for choice in choices],
            },
            "answerKey": item["answerKey"],
        }
    except (KeyError, TypeError) as err:
        return RowError(f"missing or malformed field {err}")


def _read_arc(dataset: str, file: str) -> Callable[[Path], Iterator[SourceRow]]:
    def read(resources: Path) -> Iterator[SourceRow]:
        path = _require(dataset, resources / dataset / file)
        for row, item in _json_lines(path):
            record = item if isinstance(item, RowError) else _arc_record(item)
            yield SourceRow(record, str(path), row)

    return read


def _read_truthfulqa(resources: Path) -> Iterator[SourceRow]:
    path = _require("truthfulqa", resources / "truthfulqa" / "mc_task.json")
    try:
        items = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise DatasetError(f"dataset 'truthfulqa': {path} is not valid JSON: {err}") from None
    if not isinstance(items, list):
        raise DatasetError(f"dataset 'truthfulqa': {path} does not hold a JSON list")
    for row, item in enumerate(items):
        record: dict[str, Any] | RowError
        if isinstance(item, dict) and all(
            isinstance(item.get(f), dict) for f in ("mc1_targets", "mc2_targets")
        ):
            record = {
                "question": item.get("question"),
                **{
                    field: {"choices": list(item[field]), "labels": list(item[field].values())}
                    for field in ("mc1_targets", "mc2_targets")
                },
            }
        else:
            record = RowError("expected an object with mc1_targets and mc2_targets")
        yield SourceRow(record, str(path), row)


def _read_mmlu(resources: Path) -> Iterator[SourceRow]:
    """The 57 test CSVs in alphabetical order (as cais/mmlu `all`); no header, RFC-4180 quoting."""
    folder = resources / "mmlu" / "test"
    paths = sorted(folder.glob("*_test.csv"))
    if not paths:
        raise DatasetError(f"dataset 'mmlu': no *_test.csv files in {folder}")
    for path in paths:
        subject = path.name.removesuffix("_test.csv")
        with path.open(encoding="utf-8", newline="") as handle:
            reader = csv.reader(handle, strict=True)
            row = 0
            while True:
                try:
                    fields = next(reader)
                except StopIteration:
                    break
                except csv.Error as err:
                    reason = f"unparseable CSV (line {reader.line_num}): {err}; rest of file unread"
                    yield SourceRow(RowError(reason), str(path), row)
                    break
                yield SourceRow(_mmlu_record(fields, subject), str(path), row)
                row += 1


def _mmlu_record(fields: list[str], subject: str) -> dict[str, Any] | RowError:
    """A CSV row (question, A, B, C, D, answer letter) in the cais/mmlu layout."""
    if len(fields) < 3:
        return RowError(f"expected 6 fields (question, 4 choices, answer), found {len(fields)}")
    answer = fields[-1].strip()
    if answer not in ("A", "B", "C", "D"):
        return RowError(f"answer {answer!r} is not one of A, B, C, D")
    return {
        "question": fields[0],
        "subject": subject,
        "choices": fields[1:-1],
        "answer": "ABCD".index(answer),
    }


_LOGIQA_OPTION = re.compile(r"([A-D])(?:\s*[.?．:)]\s*|\s+)(.*)", re.DOTALL)


def _logiqa_options(lines: Sequence[str]) -> list[str]:
    """The option texts of a block in letter order, without their "A." (or "A ", "A?") prefix.

    19 blocks list their options A, C, B, D, and their answer letter refers to the prefix
    (block 108: the answer "b" is the line "B.No.2 valve and No.3 valve."), so the options are
    put back in letter order. When the prefixes are not a permutation of A-D (two blocks lost
    one in translation: "Storehouse B.3"), the lines keep their places and unprefixed lines
    stay whole.
    """
    matches = [_LOGIQA_OPTION.fullmatch(line) for line in lines]
    texts = {match.group(1): match.group(2) for match in matches if match}
    if len(texts) == 4 and all(matches):
        return [texts[letter] for letter in "ABCD"]
    return [
        match.group(2) if match and match.group(1) == letter else line
        for letter, line, match in zip("ABCD", lines, matches, strict=True)
    ]


def _logiqa_blocks(lines: Sequence[str]) -> Iterator[tuple[int, list[str]]]:
    """(first line number, non-blank lines) of each blank-line-separated block."""
    start, block = 1, []
    for number, line in enumerate(lines, start=1):
        if line.strip():
            block.append(line)
            continue
        if block:
            yield start, block
        start, block = number, []
    if block:
        yield start, block


def _read_logiqa(resources: Path) -> Iterator[SourceRow]:
    """Test.txt: 8-line blocks [blank, answer a-d, context, question, A., B., C., D.].

    Blocks are split on blank lines, so one damaged block does not shift the rest.
    """
    path = _require("logiqa", resources / "logiqa" / "Test.txt")
    lines = path.read_text(encoding="utf-8").split("\n")
    for row, (start, block) in enumerate(_logiqa_blocks(lines)):
        where = f"lines {start}-{start + len(block)}"
        record: dict[str, Any] | RowError
        if len(block) != 7:
            record = RowError(
                f"{where}: expected an 8-line block (blank, answer, context, question, "
                f"4 options), found {len(block) + 1} lines"
            )
        elif (answer := block[0].strip().lower()) not in ("a", "b", "c", "d"):
            record = RowError(f"{where}: answer line {block[0]!r} is not one of a, b, c, d")
        else:
            record = {
                "context": block[1],
                "query": block[2],
                "options": _logiqa_options(block[3:]),
                "correct_option": "abcd".index(answer),
            }
        yield SourceRow(record, str(path), row)


# --- the Hugging Face hub -> records --------------------------------------------------------


@dataclass(frozen=True)
class HubSpec:
    """Where a benchmark lives on the Hugging Face hub.

    `configs` are loaded in order and concatenated. `row_per` names the record field whose
    value restarts the row count (MMLU rows count within their subject, as in the CSVs).
    """

    repo: str
    configs: tuple[str | None, ...]
    split: str
    revision: str | None = None
    data_dir: str | None = None
    row_per: str | None = None


@dataclass(frozen=True)
class _Benchmark:
    read: Callable[[Path], Iterator[SourceRow]]
    hub: HubSpec
    normalise: Callable[[Mapping[str, Any], int, int], dict[str, Any]]


_BENCHMARKS: dict[str, _Benchmark] = {
    "math": _Benchmark(
        _read_math, HubSpec("EleutherAI/hendrycks_math", MATH_SUBJECTS, "test"), _normalise_math
    ),
    # The repository holds a loading script, which `datasets` no longer runs; the hub keeps
    # its Parquet conversion on this branch.
    "logiqa": _Benchmark(
        _read_logiqa,
        HubSpec(
            "lucasmccabe/logiqa",
            (None,),
            "test",
            revision="refs/convert/parquet",
            data_dir="default",
        ),
        _normalise_logiqa,
    ),
    "truthfulqa": _Benchmark(
        _read_truthfulqa,
        HubSpec("truthfulqa/truthful_qa", ("multiple_choice",), "validation"),
        _normalise_truthfulqa,
    ),
    "arc_challenge": _Benchmark(
        _read_arc("arc_challenge", "ARC-Challenge-Test.jsonl"),
        HubSpec("allenai/ai2_arc", ("ARC-Challenge",), "test"),
        _normalise_arc("arc_challenge"),
    ),
    "arc_easy": _Benchmark(
        _read_arc("arc_easy", "ARC-Easy-Test.jsonl"),
        HubSpec("allenai/ai2_arc", ("ARC-Easy",), "test"),
        _normalise_arc("arc_easy"),
    ),
    "mmlu": _Benchmark(
        _read_mmlu, HubSpec("cais/mmlu", ("all",), "test", row_per="subject"), _normalise_mmlu
    ),
    "aqua_rat": _Benchmark(
        _read_aqua, HubSpec("deepmind/aqua_rat", ("raw",), "test"), _normalise_aqua
    ),
    "math500": _Benchmark(
        _read_math500, HubSpec("HuggingFaceH4/MATH-500", (None,), "test"), _normalise_math500
    ),
}

HUB: dict[str, HubSpec] = {name: benchmark.hub for name, benchmark in _BENCHMARKS.items()}


def _benchmark(dataset: str) -> _Benchmark:
    try:
        return _BENCHMARKS[dataset]
    except KeyError:
        raise DatasetError(
            f"unknown dataset {dataset!r}; expected one of {', '.join(DATASETS)}"
        ) from None


def read_bundled(dataset: str, resources: Path) -> Iterator[SourceRow]:
    """The rows of a benchmark's shipped files in `resources` (resources/datasets)."""
    return _benchmark(dataset).read(Path(resources))


def load_hub(
    dataset: str, path: str | Path | None = None, cache_dir: str | Path | None = None
) -> list[SourceRow]:
    """The rows of a benchmark loaded with `datasets.load_dataset`.

    `path` replaces the hub repository with a local copy in the same layout (the same
    configs, split and data_dir), for offline use and tests.
    """
    import datasets as hf  # heavy: imported only when the hub is used

    spec = _benchmark(dataset).hub
    where = str(spec.repo if path is None else path)
    configs = [c or "default" for c in spec.configs]
    label = (
        f"{where} [{configs[0]}..{configs[-1]}]" if len(configs) > 1 else f"{where} [{configs[0]}]"
    )
    file = f"{label} {spec.split}"
    options: dict[str, Any] = {"split": spec.split, "cache_dir": cache_dir}
    if spec.data_dir is not None:
        options["data_dir"] = spec.data_dir
    if path is None and spec.revision is not None:
        options["revision"] = spec.revision
    rows: list[SourceRow] = []
    counts: Counter[object] = Counter()
    for config in spec.configs:
        try:
            table = hf.load_dataset(where, config, **options)
        except Exception as err:  # the hub raises many kinds; say which dataset failed
            raise DatasetError(
                f"dataset '{dataset}': cannot load {where} ({config}): {err}"
            ) from err
        for record in table.to_list():
            group = record.get(spec.row_per) if spec.row_per else None
            where_in = f"{file} ({spec.row_per} {group})" if spec.row_per else file
            rows.append(SourceRow(record, where_in, counts[group]))
            counts[group] += 1
    return rows


# --- your own benchmark: a `datasets` entry that is a mapping -------------------------------

GOLD_FORMATS = ("letter", "index", "text")
FILE_FORMATS = {".jsonl": "jsonl", ".json": "jsonl", ".csv": "csv", ".parquet": "parquet"}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class CustomSpec:
    """A benchmark described in the config: where its rows are and what their fields mean.

    Exactly one of `path` (a local JSONL, CSV or Parquet file) and `hub` (a Hugging Face
    dataset id, or a local folder in the hub layout) is set. `choices` is one field holding
    a list, or several fields holding one choice each; `gold` holds a letter, a 0-based
    index or the text of the right choice (`gold_format`), or for math the final answer
    (or a solution whose last `\\boxed{}` is the answer).
    """

    name: str
    question: str
    gold: str
    task: str
    answer_type: str = "multiple_choice"
    choices: str | tuple[str, ...] | None = None
    gold_format: str = "letter"
    id: str | None = None
    subject: str | None = None
    shuffle_choices: bool = False
    path: str | None = None
    hub: str | None = None
    split: str | None = None
    subset: str | None = None

    @property
    def source(self) -> str:
        """How a row's place is named: the file, or the hub id with subset and split."""
        if self.path is not None:
            return self.path
        return f"{self.hub} [{self.subset or 'default'}] {self.split}"


def dataset_name(entry: str | Mapping[str, Any]) -> str:
    """The name a `datasets` entry goes by in result paths."""
    return entry if isinstance(entry, str) else str(entry.get("name"))


def custom_spec(entry: Mapping[str, Any], key: str = "datasets") -> CustomSpec:
    """The `CustomSpec` of a config mapping; a `DatasetError` naming `key` when it is wrong.

    The config schema checks types; this checks what a schema cannot say well.
    """
    fields = {f for f in CustomSpec.__dataclass_fields__}
    unknown = sorted(set(entry) - fields)
    if unknown:
        raise DatasetError(f"{key}: unknown field(s) {', '.join(unknown)}")
    for required in ("name", "question", "gold", "task"):
        value = entry.get(required)
        if not isinstance(value, str) or not value.strip():
            raise DatasetError(f"{key}.{required}: required, a non-empty string")
    name = entry["name"]
    if not _NAME.match(name):
        raise DatasetError(f"{key}.name: {name!r} must match {_NAME.pattern} (used in paths)")
    if name in TASKS:
        raise DatasetError(f"{key}.name: {name!r} is a built-in dataset; choose another name")
    if (entry.get("path") is None) == (entry.get("hub") is None):
        raise DatasetError(f"{key}: give exactly one of `path` (a local file) and `hub`")
    if entry.get("path") is not None:
        suffix = Path(entry["path"]).suffix.lower()
        if suffix not in FILE_FORMATS:
            raise DatasetError(
                f"{key}.path: {entry['path']}: expected a {', '.join(FILE_FORMATS)} file"
            )
        for field in ("split", "subset"):
            if entry.get(field) is not None:
                raise DatasetError(f"{key}.{field}: only for a `hub` dataset")
    elif not entry.get("split"):
        raise DatasetError(f"{key}.split: required for a `hub` dataset")
    answer_type = entry.get("answer_type", "multiple_choice")
    if answer_type not in ANSWER_TYPES:
        raise DatasetError(f"{key}.answer_type: {answer_type!r}; use {' or '.join(ANSWER_TYPES)}")
    gold_format = entry.get("gold_format", "letter")
    if gold_format not in GOLD_FORMATS:
        raise DatasetError(f"{key}.gold_format: {gold_format!r}; use {', '.join(GOLD_FORMATS)}")
    choices = entry.get("choices")
    if answer_type == "multiple_choice":
        if isinstance(choices, str):
            pass
        elif isinstance(choices, Sequence) and len(choices) >= 2:
            choices = tuple(choices)
            if len(choices) > len(LETTERS):
                raise DatasetError(f"{key}.choices: at most {len(LETTERS)} choice fields")
        else:
            raise DatasetError(
                f"{key}.choices: a field holding a list, or a list of at least 2 fields"
            )
    elif choices is not None or entry.get("shuffle_choices"):
        raise DatasetError(f"{key}.choices: a math dataset has no choices")
    return CustomSpec(**{**entry, "choices": choices})


def _cell(record: Mapping[str, Any], field: str) -> Any:
    if field not in record:
        raise RowError(f"field '{field}' is missing")
    return record[field]


def _cell_text(record: Mapping[str, Any], field: str) -> str:
    """A field as stripped text: numbers are written out (CSV and Parquet cells)."""
    value = _cell(record, field)
    if isinstance(value, bool) or value is None:
        raise RowError(f"field '{field}' is empty or not text")
    if isinstance(value, int | float):
        return str(value)
    if not isinstance(value, str):
        raise RowError(f"field '{field}' is not text")
    return value.strip()


def _custom_choices(spec: CustomSpec, record: Mapping[str, Any]) -> list[str]:
    if isinstance(spec.choices, str):
        value = _cell(record, spec.choices)
        if isinstance(value, str):  # a CSV cell holding a JSON list
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                raise RowError(f"field '{spec.choices}' is not a list (nor a JSON list)") from None
        if not isinstance(value, Sequence) or isinstance(value, str):
            raise RowError(f"field '{spec.choices}' is not a list")
        choices = [_cell_text({spec.choices: v}, spec.choices) for v in value]
    else:
        assert spec.choices is not None
        choices = [_cell_text(record, f) if record.get(f) is not None else "" for f in spec.choices]
        while choices and not choices[-1]:  # fewer choices than columns: trailing blanks
            choices.pop()
    if len(choices) < 2:
        raise RowError(f"{len(choices)} choice(s); a multiple-choice question needs at least 2")
    if len(choices) > len(LETTERS):
        raise RowError(f"{len(choices)} choices; at most {len(LETTERS)} can be lettered")
    return choices


def _custom_gold_index(spec: CustomSpec, record: Mapping[str, Any], choices: list[str]) -> int:
    value = _cell(record, spec.gold)
    if spec.gold_format == "letter":
        if not isinstance(value, str):
            raise RowError(f"gold field '{spec.gold}' holds {value!r}, not a letter")
        return _letter_index(value.strip().strip("()"), len(choices))
    if spec.gold_format == "index":
        text = str(value).strip() if not isinstance(value, bool) else ""
        if not re.fullmatch(r"\d+", text):
            raise RowError(f"gold field '{spec.gold}' holds {value!r}, not a 0-based index")
        if int(text) >= len(choices):
            raise RowError(f"gold index {int(text)} is not among the {len(choices)} choices")
        return int(text)
    gold = _cell_text(record, spec.gold)
    hits = [i for i, choice in enumerate(choices) if choice == gold]
    if len(hits) != 1:
        found = "is not the text of any choice" if not hits else "is the text of several choices"
        raise RowError(f"gold {gold!r} {found}")
    return hits[0]


def _math_gold(text: str, question: str) -> str:
    """The final answer of a math gold: the boxed answer of a solution (`golds.math_gold`,
    the rule of the bundled MATH golds), the text after the last "####" (GSM8K's
    solutions), or else the whole text."""
    if _BOX.search(text):
        gold = (golds.math_gold(question, text)[0] or "").strip()
    elif "####" in text:
        gold = text.rsplit("####", 1)[1].strip().replace(",", "")
    else:
        gold = text.strip()
    if gold:
        from critical_windows.grading.equivalence import is_parsed, parse_math  # math-verify: heavy

        if is_parsed(parse_math(gold), gold):
            return gold
    raise RowError(f"math gold {text[:60]!r} has no answer math-verify can read")


def _normalise_custom(spec: CustomSpec) -> Callable[[Mapping[str, Any], int, int], dict[str, Any]]:
    def normalise(record: Mapping[str, Any], row: int, seed: int) -> dict[str, Any]:
        key = _cell_text(record, spec.id) if spec.id else f"{row:04d}"
        if not key:
            raise RowError(f"id field '{spec.id}' is empty")
        question = _cell_text(record, spec.question)
        if not question:
            raise RowError(f"question field '{spec.question}' is empty")
        subject = (_cell_text(record, spec.subject) or None) if spec.subject else None
        qid = f"{spec.name}-{key}"
        if spec.answer_type == "math":
            return {
                "question_id": qid,
                "dataset": spec.name,
                "problem": question,
                "choices": [],
                "gold": _math_gold(_cell_text(record, spec.gold), question),
                "answer_type": "math",
                "task": spec.task,
                "subject": subject,
                "level": None,
            }
        choices = _custom_choices(spec, record)
        gold = _custom_gold_index(spec, record, choices)
        if spec.shuffle_choices:
            order = shuffle_order(len(choices), seed, qid)
            choices, gold = [choices[i] for i in order], order.index(gold)
        return _mc_row(spec.name, key, row, question, choices, gold, subject, spec.task)

    return normalise


def _read_table_rows(path: Path, file_format: str) -> Iterator[tuple[int, Any]]:
    """(0-based data row, record or RowError) of a local JSONL, CSV or Parquet file."""
    if file_format == "jsonl":
        yield from _json_lines(path)
    elif file_format == "csv":
        with path.open(encoding="utf-8", newline="") as handle:
            reader = csv.DictReader(handle, strict=True)
            row = 0
            while True:
                try:
                    record = next(reader)
                except StopIteration:
                    break
                except csv.Error as err:
                    yield row, RowError(f"unparseable CSV (line {reader.line_num}): {err}")
                    break
                if None in record:
                    yield row, RowError("more fields than the header names")
                else:
                    yield row, record
                row += 1
    else:
        import pyarrow.parquet as pq

        yield from enumerate(pq.read_table(path).to_pylist())


def read_custom(
    spec: CustomSpec, root: Path | None = None, cache_dir: str | Path | None = None
) -> Iterator[SourceRow] | list[SourceRow]:
    """The rows of a config-described benchmark; a relative `path` is taken from `root`."""
    if spec.path is not None:
        path = Path(spec.path)
        if root is not None and not path.is_absolute():
            path = Path(root) / path
        _require(spec.name, path)
        file_format = FILE_FORMATS[path.suffix.lower()]
        return (SourceRow(r, spec.path, row) for row, r in _read_table_rows(path, file_format))
    import datasets as hf  # heavy: imported only when the hub is used

    try:
        table = hf.load_dataset(spec.hub, spec.subset, split=spec.split, cache_dir=cache_dir)
    except Exception as err:  # the hub raises many kinds; say which dataset failed
        raise DatasetError(f"dataset '{spec.name}': cannot load {spec.source}: {err}") from err
    return [SourceRow(r, spec.source, row) for row, r in enumerate(table.to_list())]


def _normaliser(
    dataset: str | CustomSpec,
) -> tuple[str, Callable[[Mapping[str, Any], int, int], dict[str, Any]]]:
    if isinstance(dataset, CustomSpec):
        return dataset.name, _normalise_custom(dataset)
    return dataset, _benchmark(dataset).normalise


# --- records -> tables ----------------------------------------------------------------------


def _polars_schema(schema: pa.Schema) -> pl.Schema:
    return pl.from_arrow(schema.empty_table()).schema  # type: ignore[union-attr]


def build_tables(
    dataset: str | CustomSpec,
    rows: Iterable[SourceRow],
    *,
    n: int | None,
    seed: int,
    bad_rows: str,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Normalise `rows`, handle malformed ones as `bad_rows` says, and draw `n` questions."""
    name, normalise = _normaliser(dataset)
    questions: dict[str, dict[str, Any]] = {}
    rejects: list[dict[str, Any]] = []
    for source in rows:
        try:
            if isinstance(source.record, RowError):
                raise source.record
            question = {**normalise(source.record, source.row, seed), "source_row": source.row}
            if (earlier := questions.get(question["question_id"])) is not None:
                raise RowError(
                    f"question id {question['question_id']!r} repeats row {earlier['source_row']}"
                )
        except RowError as err:
            set_aside(err, name, source, bad_rows, rejects)
            continue
        questions[question["question_id"]] = question
    chosen = [questions[q] for q in draw(questions, n, seed)]
    return (
        pl.DataFrame(chosen, schema=_polars_schema(tables.QUESTIONS)),
        pl.DataFrame(rejects, schema=_polars_schema(tables.REJECTS)),
    )


def prepare(
    dataset: str | Mapping[str, Any],
    *,
    source: str,
    resources: Path,
    n: int | None,
    seed: int,
    bad_rows: str,
    root: Path | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Return (questions, rejects) as polars frames matching tables.QUESTIONS and tables.REJECTS.

    `dataset` is a built-in name or a config mapping (`custom_spec`; its relative `path` is
    taken from `root`). A built-in is read from `source`: "bundled" (the files in
    `resources`) or "hub" (`datasets.load_dataset`). `n` questions are drawn with `seed`
    (None: the whole split); `bad_rows` is "error" or "skip".
    """
    if bad_rows not in BAD_ROWS:
        name = dataset_name(dataset)
        raise DatasetError(f"dataset '{name}': bad_rows must be error or skip, not {bad_rows!r}")
    if not isinstance(dataset, str):
        spec = custom_spec(dataset)
        return build_tables(spec, read_custom(spec, root), n=n, seed=seed, bad_rows=bad_rows)
    _benchmark(dataset)
    if source not in SOURCES:
        raise DatasetError(f"dataset '{dataset}': unknown source {source!r}; use bundled or hub")
    rows = read_bundled(dataset, resources) if source == "bundled" else load_hub(dataset)
    return build_tables(dataset, rows, n=n, seed=seed, bad_rows=bad_rows)


def prepare_bundled(names: Sequence[str], *, resources: Path, n: int, seed: int) -> pl.DataFrame:
    """The questions of every bundled dataset in `names` (n each, drawn with `seed`) in one
    frame, for benchmarks and tests; a bad row raises."""
    return pl.concat(
        prepare(name, source="bundled", resources=resources, n=n, seed=seed, bad_rows="error")[0]
        for name in names
    )
