"""Compare the tables of two runs: every Parquet file under one results folder against the
file of the same path under the other, column for column and row for row.

    python -m critical_windows.io.compare RESULTS_A RESULTS_B

Exit status 0 when every table is identical (same columns, types and values, in order),
1 otherwise; each difference is printed with its path. The key-value metadata (package
version, settings) is reported but not compared, unless `--metadata` is given. The model
folders and the journals (the engines' caches, keyed by request) are not run outputs.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import pyarrow.parquet as pq

SKIP = ("models", ".journal", ".cache")
"""Top folders of `results/` and path parts that hold caches, not tables of a run."""


def tables_under(root: Path) -> set[Path]:
    """Relative paths of the Parquet files under `root`, without caches."""
    return {
        p.relative_to(root)
        for p in root.rglob("*.parquet")
        if not any(part in SKIP for part in p.relative_to(root).parts)
    }


def compare_table(a: Path, b: Path, metadata: bool = False) -> list[str]:
    """What differs between two Parquet files; empty when they hold the same table."""
    ta, tb = pq.read_table(a), pq.read_table(b)
    if ta.schema.remove_metadata() != tb.schema.remove_metadata():
        return [
            f"schema differs:\n  {ta.schema.remove_metadata()}\n  {tb.schema.remove_metadata()}"
        ]
    out = []
    if ta.num_rows != tb.num_rows:
        out.append(f"{ta.num_rows} rows against {tb.num_rows}")
    else:
        for name in ta.column_names:
            if not ta[name].equals(tb[name]):
                diff = [
                    i for i, (x, y) in enumerate(zip(ta[name], tb[name], strict=True)) if x != y
                ]
                out.append(f"column {name}: {len(diff)} rows differ, first at row {diff[:1]}")
    if metadata and ta.schema.metadata != tb.schema.metadata:
        out.append("metadata differs")
    return out


def compare_runs(a: Path, b: Path, metadata: bool = False) -> dict[str, list[str]]:
    """Differences per relative path; a table only one run has is a difference."""
    in_a, in_b = tables_under(a), tables_under(b)
    diffs: dict[str, list[str]] = {}
    for rel in sorted(in_a | in_b):
        if rel not in in_b or rel not in in_a:
            diffs[str(rel)] = [f"only in {a if rel in in_a else b}"]
        elif found := compare_table(a / rel, b / rel, metadata):
            diffs[str(rel)] = found
    return diffs


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("a", type=Path, help="a results folder")
    parser.add_argument("b", type=Path, help="the results folder to compare it with")
    parser.add_argument("--metadata", action="store_true", help="compare metadata too")
    args = parser.parse_args(argv)
    for folder in (args.a, args.b):
        if not folder.is_dir():
            parser.error(f"{folder} is not a folder")
    diffs = compare_runs(args.a, args.b, args.metadata)
    n = len(tables_under(args.a) | tables_under(args.b))
    for rel, found in diffs.items():
        print(f"{rel}: " + "; ".join(found))
    print(f"{n - len(diffs)} of {n} tables identical")
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main())
