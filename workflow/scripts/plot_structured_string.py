"""Rule plot_structured_string: the exact and the sampled curve of one string with its bounds."""

import sys

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)  # noqa: SIM115

from critical_windows.experiments.structured import constrained
from critical_windows.io import tables

constrained.render_comparison(
    int(snakemake.wildcards.rank),
    tables.read_table(snakemake.input.curves, tables.STRUCTURED_CURVES),
    tables.read_table(snakemake.input.exact_curves, tables.STRUCTURED_EXACT_CURVES),
    tables.read_table(snakemake.input.blanks, tables.STRUCTURED_BOUNDS),
    html=snakemake.output.html,
    png=snakemake.output.png,
)
