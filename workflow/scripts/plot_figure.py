"""Rule plot_figure: one figure of a model's run, as self-contained HTML and PNG."""

import sys

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

import polars as pl

from critical_windows.io import tables
from critical_windows.views import figures

curves = pl.concat([tables.read_table(p, tables.CURVES) for p in snakemake.input.curves])
levels = [tables.read_table(p, tables.LEVEL_DISTRIBUTIONS) for p in snakemake.input.distributions]
figures.render(
    snakemake.wildcards.figure,
    figures.with_forced_curve(curves, pl.concat(levels)),
    pl.concat([tables.read_table(p, tables.WINDOWS) for p in snakemake.input.windows]),
    html=snakemake.output.html,
    png=snakemake.output.png,
)
