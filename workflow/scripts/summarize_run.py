"""Rule summarize_run: the headline numbers of a model's run as CSV and Markdown."""

import sys

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

import polars as pl

from critical_windows.analysis import summary
from critical_windows.grading import audit
from critical_windows.io import tables
from critical_windows.io.atomic import write_atomic

curves = pl.concat([tables.read_table(p, tables.CURVES) for p in snakemake.input.curves])
found = pl.concat([tables.read_table(p, tables.WINDOWS) for p in snakemake.input.windows])
numbers = summary.summarize(
    curves, found, snakemake.wildcards.model, datasets=snakemake.params.datasets
)
rates = audit.rates_of_graded(snakemake.input.graded)  # the grading audit (issue #16)
numbers = audit.with_rates(numbers, rates, pooled=summary.POOLED)
write_atomic(snakemake.output.csv, numbers.write_csv())
write_atomic(
    snakemake.output.md,
    summary.to_markdown(numbers, snakemake.params.thresholds) + audit.markdown(rates),
)
print(numbers)
