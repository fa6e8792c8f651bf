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

from critical_windows import tables

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"

TASKS: dict[str, str] = {
    "math": "math",
    "logiqa": "logic",
    "truthfulqa": "true or false",
    "arc_challenge": "science",
    "arc_easy": "science",
    "mmlu": "multiple choice",
    "aqua_rat": "math",
}
"""The task word of each benchmark, used in the prompts (METHOD.md, section 2)."""

DATASETS: tuple[str, ...] = tuple(TASKS)
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


def _braced(text: str, start: int) -> str | None:
    """The content of the brace group opening at `text[start]`, or None when it never closes.

    Escaped characters (`\\{`, `\\}`, `\\\\`) do not count as braces.
    """
    depth = 0
    i = start
    while i < len(text):
        char = text[i]
        if char == "\\":
            i += 2
            continue
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return text[start + 1 : i]
        i += 1
    return None


def _box_argument(text: str, start: int) -> str | None:
    """The argument of a box command whose name ends at `start`."""
    rest = text[start:]
    stripped = rest.lstrip()
    if stripped.startswith("{"):
        return _braced(text, start + len(rest) - len(stripped))
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
        "task": TASKS[dataset],
        "subject": subject,
        "level": None,
        "source_row": row,
    }


def _normalise_math(record: Mapping[str, Any], row: int, seed: int) -> dict[str, Any]:
    problem = _text(record, "problem")
    gold = last_boxed(_text(record, "solution"))
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


# --- records -> tables ----------------------------------------------------------------------


def _polars_schema(schema: pa.Schema) -> pl.Schema:
    return pl.from_arrow(schema.empty_table()).schema  # type: ignore[union-attr]


def build_tables(
    dataset: str, rows: Iterable[SourceRow], *, n: int | None, seed: int, bad_rows: str
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Normalise `rows`, handle malformed ones as `bad_rows` says, and draw `n` questions."""
    normalise = _benchmark(dataset).normalise
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
            set_aside(err, dataset, source, bad_rows, rejects)
            continue
        questions[question["question_id"]] = question
    chosen = [questions[q] for q in draw(questions, n, seed)]
    return (
        pl.DataFrame(chosen, schema=_polars_schema(tables.QUESTIONS)),
        pl.DataFrame(rejects, schema=_polars_schema(tables.REJECTS)),
    )


def prepare(
    dataset: str, *, source: str, resources: Path, n: int | None, seed: int, bad_rows: str
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Return (questions, rejects) as polars frames matching tables.QUESTIONS and tables.REJECTS.

    `source` is "bundled" (the files in `resources`) or "hub" (`datasets.load_dataset`);
    `n` questions are drawn with `seed` (None: the whole split); `bad_rows` is "error" or "skip".
    """
    _benchmark(dataset)
    if source not in SOURCES:
        raise DatasetError(f"dataset '{dataset}': unknown source {source!r}; use bundled or hub")
    if bad_rows not in BAD_ROWS:
        raise DatasetError(f"dataset '{dataset}': bad_rows must be error or skip, not {bad_rows!r}")
    rows = read_bundled(dataset, resources) if source == "bundled" else load_hub(dataset)
    return build_tables(dataset, rows, n=n, seed=seed, bad_rows=bad_rows)


def prepare_bundled(names: Sequence[str], *, resources: Path, n: int, seed: int) -> pl.DataFrame:
    """The questions of every bundled dataset in `names` (n each, drawn with `seed`) in one
    frame, for benchmarks and tests; a bad row raises."""
    return pl.concat(
        prepare(name, source="bundled", resources=resources, n=n, seed=seed, bad_rows="error")[0]
        for name in names
    )
