"""Rule build_prefill_explorer: the page to read a model's prefill attack request by request."""

import sys

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

import polars as pl

from critical_windows.experiments.prefill import views
from critical_windows.io import tables
from critical_windows.io.atomic import write_atomic

p = snakemake.params
page = views.build_explorer(
    snakemake.wildcards.model,
    pl.concat([tables.read_table(f, tables.REQUESTS) for f in snakemake.input.requests]),
    tables.read_table(snakemake.input.continuations, tables.PREFILL_CONTINUATIONS),
    pl.concat([tables.read_table(f, tables.PREFILL_JUDGED) for f in snakemake.input.judged]),
    tables.read_table(snakemake.input.curves, tables.COMPLIANCE_CURVES),
    tables.read_table(snakemake.input.windows, tables.COMPLIANCE_WINDOWS),
    opener=p.opener,
    per_dataset=p.per_dataset,
    note=p.note,
)
write_atomic(snakemake.output.html, page)
print(f"{len(page) / 1e6:.2f} MB")
