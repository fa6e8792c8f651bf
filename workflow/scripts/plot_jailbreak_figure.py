"""Rule plot_prefill_figure: one figure of one judge's prefill attack, as HTML and PNG."""

import sys

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

from critical_windows import jailbreak, jailbreak_views, tables

p = snakemake.params
jailbreak_views.render(
    snakemake.wildcards.prefill_figure,
    tables.read_table(snakemake.input.curves, jailbreak.CURVES),
    tables.read_table(snakemake.input.windows, jailbreak.WINDOWS),
    judge=snakemake.wildcards.judge,
    model=snakemake.wildcards.model,
    opener=p.opener,
    step=p.step,
    note=p.note,
    html_path=snakemake.output.html,
    png_path=snakemake.output.png,
)
