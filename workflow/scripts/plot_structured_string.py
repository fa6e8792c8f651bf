"""Rule plot_structured_string: the exact and the sampled curve of one string with its bounds."""

import sys

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)  # noqa: SIM115

from critical_windows import structured, structured_exact, tables  # noqa: E402

structured_exact.render_comparison(
    int(snakemake.wildcards.rank),
    tables.read_table(snakemake.input.curves, structured.CURVES),
    tables.read_table(snakemake.input.exact_curves, structured_exact.EXACT_CURVES),
    tables.read_table(snakemake.input.blanks, structured_exact.BOUNDS),
    html=snakemake.output.html,
    png=snakemake.output.png,
)
