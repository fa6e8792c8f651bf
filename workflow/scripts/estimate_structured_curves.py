"""Rule estimate_structured_curves: P(s | prefix) per distinct answer, and bounds per blank."""

import sys

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)  # noqa: SIM115

import polars as pl  # noqa: E402

from critical_windows import structured, tables  # noqa: E402
from critical_windows.summary import write_atomic  # noqa: E402

p = snakemake.params
samples = tables.read_table(snakemake.input[0], structured.SAMPLES)
curves, blanks, conformance = structured.estimate(
    samples, structured.make_form(**p.form), p.grid_step
)
meta = {"grid_step": p.grid_step}
tables.write_table(curves, snakemake.output.curves, structured.CURVES, meta)
tables.write_table(blanks, snakemake.output.blanks, structured.BLANKS, meta)
write_atomic(snakemake.output.blanks_csv, blanks.write_csv())
write_atomic(snakemake.output.conformance, conformance.write_csv())
with pl.Config(tbl_rows=40, tbl_cols=-1, tbl_width_chars=200):
    print(conformance)
    print(blanks.drop("string"))
