"""Rule build_explorer: the static page to read a model's run question by question."""

import sys

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

import polars as pl

from critical_windows.io import tables
from critical_windows.io.atomic import write_atomic
from critical_windows.views import explorer


def read(paths, schema):
    return pl.concat([tables.read_table(p, schema) for p in paths])


page = explorer.build(
    snakemake.wildcards.model,
    read(snakemake.input.questions, tables.QUESTIONS),
    read(snakemake.input.base, tables.BASE),
    read(snakemake.input.truncated, tables.TRUNCATED),
    read(snakemake.input.curves, tables.CURVES),
    read(snakemake.input.windows, tables.WINDOWS),
    per_dataset=snakemake.params.questions_per_dataset,
    importance=read(snakemake.input.importance, tables.IMPORTANCE),
    levels=read(snakemake.input.distributions, tables.LEVEL_DISTRIBUTIONS),
)
write_atomic(snakemake.output.html, page)
print(f"{len(page) / 1e6:.1f} MB")
