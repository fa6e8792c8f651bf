"""Rule prepare_dataset: one benchmark (built-in or your own) as the normalised questions table."""

import sys
from pathlib import Path

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

from critical_windows.data import benchmarks
from critical_windows.io import tables

entry = snakemake.params.entry
questions, rejects = benchmarks.prepare(
    entry,
    source=snakemake.params.source,
    resources=Path(snakemake.input.get("files", "resources/datasets")),
    n=snakemake.params.questions_per_dataset,
    seed=snakemake.params.seed,
    bad_rows=snakemake.params.bad_rows,
)
source = snakemake.params.source if isinstance(entry, str) else (entry.get("path") or entry["hub"])
meta = {"source": source, "seed": snakemake.params.seed}
tables.write_table(questions, snakemake.output.questions, tables.QUESTIONS, meta)
tables.write_table(rejects, snakemake.output.rejects, tables.REJECTS, meta)
print(f"{len(questions)} questions, {len(rejects)} rejected rows")
