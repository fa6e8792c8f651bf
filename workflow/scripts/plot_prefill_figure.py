"""Rule plot_prefill_figure: one figure of one judge's prefill attack, as HTML and PNG."""

import sys

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

from critical_windows.experiments.prefill import views
from critical_windows.io import tables

p = snakemake.params
views.render(
    snakemake.wildcards.prefill_figure,
    tables.read_table(snakemake.input.curves, tables.COMPLIANCE_CURVES),
    tables.read_table(snakemake.input.windows, tables.COMPLIANCE_WINDOWS),
    judge=snakemake.wildcards.judge,
    model=snakemake.wildcards.model,
    opener=p.opener,
    step=p.step,
    note=p.note,
    html_path=snakemake.output.html,
    png_path=snakemake.output.png,
)
