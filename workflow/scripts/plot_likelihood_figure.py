"""Rule plot_likelihood_figure: ROC curves or score distributions, as HTML and PNG."""

import sys

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

from critical_windows import likelihood, tables

p = snakemake.params
likelihood.render(
    snakemake.wildcards.likelihood_figure,
    tables.read_table(snakemake.input.scores, likelihood.SCORES),
    tables.read_table(snakemake.input.roc, likelihood.ROC),
    fprs=p.fprs,
    subtitle=likelihood.subtitle(p.roles, p.note),
    html_path=snakemake.output.html,
    png_path=snakemake.output.png,
)
