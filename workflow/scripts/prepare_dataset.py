"""Rule prepare_dataset: one benchmark as the normalised questions table."""

import sys
from pathlib import Path

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

from critical_windows import datasets, tables

questions, rejects = datasets.prepare(
    snakemake.wildcards.dataset,
    source=snakemake.params.source,
    resources=Path(snakemake.input.files),
    n=snakemake.params.questions_per_dataset,
    seed=snakemake.params.seed,
    bad_rows=snakemake.params.bad_rows,
)
meta = {"source": snakemake.params.source, "seed": snakemake.params.seed}
tables.write_table(questions, snakemake.output.questions, tables.QUESTIONS, meta)
tables.write_table(rejects, snakemake.output.rejects, tables.REJECTS, meta)
print(f"{len(questions)} questions, {len(rejects)} rejected rows")
