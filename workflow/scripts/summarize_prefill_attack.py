"""Rule summarize_prefill_attack: the headline numbers of a model's prefill attack."""

import sys

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

import polars as pl

from critical_windows.experiments.prefill import attack
from critical_windows.io import tables
from critical_windows.io.atomic import write_atomic

p = snakemake.params
numbers = attack.summarize(
    tables.read_table(snakemake.input.curves, tables.COMPLIANCE_CURVES),
    tables.read_table(snakemake.input.windows, tables.COMPLIANCE_WINDOWS),
    snakemake.wildcards.model,
    note=p.note,
)
write_atomic(snakemake.output.csv, numbers.write_csv())
write_atomic(snakemake.output.md, attack.to_markdown(numbers, p.opener, p.thresholds))
with pl.Config(tbl_rows=-1, tbl_cols=-1, tbl_width_chars=200):
    print(numbers)
