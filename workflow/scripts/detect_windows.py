"""Rule detect_windows: consistency curves and critical windows of every dataset of a model."""

import sys

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

import polars as pl

from critical_windows.analysis import distributions, importance, windows
from critical_windows.io import tables


def read(paths, schema):
    return pl.concat([tables.read_table(p, schema) for p in paths], how="vertical")


params = snakemake.params
graded = read(snakemake.input.graded, tables.GRADED)
rule = {"rule": params.rule, "max_span": params.max_span}
curves, found = windows.detect(
    graded,
    read(snakemake.input.truncated, tables.TRUNCATED),
    read(snakemake.input.base, tables.BASE),
    jump=params.jump,
    drop=params.drop,
    fdr=params.fdr,
    **rule,
)
scores = importance.importance(graded, curves, seed=params.seed)
# Answer distributions beside P(f), and the forced (logprob) curve's window call and gap.
elicited = read(snakemake.input.elicited, tables.ELICITED)
levels = distributions.level_distributions(graded, elicited)
readout = distributions.readout_windows(levels, curves, jump=params.jump, drop=params.drop)
meta = {"jump": params.jump, "drop": params.drop, "fdr": params.fdr, **rule}
for dataset, curve_path, window_path, importance_path, dist_path, readout_path in zip(
    params.datasets,
    snakemake.output.curves,
    snakemake.output.windows,
    snakemake.output.importance,
    snakemake.output.distributions,
    snakemake.output.readout_windows,
    strict=True,
):
    mine = pl.col("dataset") == dataset
    tables.write_table(curves.filter(mine), curve_path, tables.CURVES, meta)
    tables.write_table(found.filter(mine), window_path, tables.WINDOWS, meta)
    tables.write_table(scores.filter(mine), importance_path, tables.IMPORTANCE, meta)
    tables.write_table(levels.filter(mine), dist_path, tables.LEVEL_DISTRIBUTIONS, meta)
    tables.write_table(readout.filter(mine), readout_path, tables.READOUT_WINDOWS, meta)
    w = found.filter(mine)
    print(
        f"{dataset}: {w.height} questions, {w['has_window'].sum()} with a window, "
        f"{(w['has_window'] & w['significant']).sum()} of them significant"
    )
