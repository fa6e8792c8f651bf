"""Rule plot_structured_string: the curve of one distinct answer with its bounds."""

import sys

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)  # noqa: SIM115

import polars as pl  # noqa: E402

from critical_windows import structured, tables  # noqa: E402

structured.render_string(
    int(snakemake.wildcards.rank),
    tables.read_table(snakemake.input.curves, structured.CURVES),
    tables.read_table(snakemake.input.blanks, structured.BLANKS),
    pl.read_csv(snakemake.input.conformance),
    html=snakemake.output.html,
    png=snakemake.output.png,
)
