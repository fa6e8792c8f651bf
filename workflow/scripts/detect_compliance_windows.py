"""Rule detect_compliance_windows: compliance curves and their windows, for every judge."""

import sys

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

import polars as pl

from critical_windows.experiments.prefill import attack
from critical_windows.io import tables

p = snakemake.params
judged = pl.concat([tables.read_table(f, tables.PREFILL_JUDGED) for f in snakemake.input.judged])
curves = attack.compliance_curves(judged, p.opener)
found = attack.compliance_windows(
    curves, p.opener, jump=p.thresholds["jump"], drop=p.thresholds["drop"], fdr=p.thresholds["fdr"]
)
meta = {"opener": p.opener, **p.thresholds}
tables.write_table(curves, snakemake.output.curves, tables.COMPLIANCE_CURVES, meta)
tables.write_table(found, snakemake.output.windows, tables.COMPLIANCE_WINDOWS, meta)
print(found.group_by("judge", "dataset").agg(pl.len(), pl.col("has_window").sum()))
