"""Harmful-request sets (AdvBench, JailbreakBench, StrongREJECT) from bundled CSV files,
drawn and normalised like the benchmarks, and the chat messages of a request."""

from __future__ import annotations

import csv
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import polars as pl

from critical_windows.catalog import HARMFUL_DATASETS
from critical_windows.cot import prompts
from critical_windows.data.benchmarks import DatasetError, RowError, SourceRow, draw, set_aside
from critical_windows.io import tables

FILES = {
    "advbench": Path("advbench") / "harmful_behaviors.csv",
    "jailbreakbench": Path("jailbreakbench") / "behaviors.csv",
    "strongreject": Path("strongreject") / "strongreject_dataset.csv",
}


# The columns each file must have, and which of them fill `request`, `target`, `category`
# and `source` (README sections 8-10).
_COLUMNS = {
    "advbench": {"request": "goal", "target": "target"},
    "jailbreakbench": {"request": "Goal", "target": "Target", "category": "Category"}
    | {"source": "Source"},
    "strongreject": {"request": "forbidden_prompt", "category": "category", "source": "source"},
}


def _read_csv(dataset: str, resources: Path) -> Iterator[SourceRow]:
    path = Path(resources) / FILES[dataset]
    if not path.is_file():
        raise DatasetError(f"dataset '{dataset}': {path} not found")
    fields = _COLUMNS[dataset]
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in fields.values() if c not in (reader.fieldnames or [])]
        if missing:
            raise DatasetError(
                f"dataset '{dataset}': {path} has no column {', '.join(map(repr, missing))} "
                f"(header: {reader.fieldnames})"
            )
        for row, record in enumerate(reader):
            yield SourceRow(record, str(path), row)


def _normalise(dataset: str, record: Mapping[str, Any], row: int) -> dict[str, Any]:
    fields = _COLUMNS[dataset]
    values = {name: (record.get(column) or "").strip() for name, column in fields.items()}
    if not values["request"]:
        raise RowError(f"the request (column {fields['request']!r}) is empty")
    return {
        "request_id": f"{dataset}-{row:04d}",
        "dataset": dataset,
        "request": values["request"],
        "target": values.get("target") or None,
        "category": values.get("category") or None,
        "source": values.get("source") or None,
        "source_row": row,
    }


def prepare_requests(
    dataset: str, *, resources: Path, n: int | None, seed: int, bad_rows: str
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(requests, rejects) of one harmful-request dataset shipped in `resources`, as
    tables.REQUESTS and tables.REJECTS; `n` requests drawn with `seed` (None: all)."""
    if dataset not in HARMFUL_DATASETS:
        raise DatasetError(
            f"unknown jailbreak dataset {dataset!r}; expected one of {HARMFUL_DATASETS}"
        )
    requests: dict[str, dict[str, Any]] = {}
    rejects = []
    for source in _read_csv(dataset, resources):
        try:
            request = _normalise(dataset, source.record, source.row)  # type: ignore[arg-type]
        except RowError as err:
            set_aside(err, dataset, source, bad_rows, rejects)
            continue
        requests[request["request_id"]] = request
    chosen = [requests[r] for r in draw(requests, n, seed)]
    return tables.frame(chosen, tables.REQUESTS), tables.frame(rejects, tables.REJECTS)


def request_messages(request: str, system_prompt: str | None) -> prompts.Messages:
    """The attacked conversation: an optional system turn and the request as the user turn."""
    head = [{"role": "system", "content": system_prompt}] if system_prompt else []
    return [*head, {"role": "user", "content": request}]
