"""Rule plot_likelihood_figure: ROC curves or score distributions, as HTML and PNG."""

import sys

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

from critical_windows.experiments.likelihood import views
from critical_windows.io import tables

p = snakemake.params
views.render(
    snakemake.wildcards.likelihood_figure,
    tables.read_table(snakemake.input.scores, tables.LIKELIHOOD_SCORES),
    tables.read_table(snakemake.input.roc, tables.LIKELIHOOD_ROC),
    fprs=p.fprs,
    subtitle=views.subtitle(p.roles, p.note),
    html_path=snakemake.output.html,
    png_path=snakemake.output.png,
)
