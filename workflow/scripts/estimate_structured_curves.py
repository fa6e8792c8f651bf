"""Rule estimate_structured_curves: the exact and the sampled P(s | prefix) of every string,
the theory's bounds per blank for both, conformance of the unconstrained samples."""

import sys

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)  # noqa: SIM115

import polars as pl  # noqa: E402

from critical_windows.experiments.structured import constrained, forms
from critical_windows.io import tables
from critical_windows.io.atomic import write_atomic  # noqa: E402

p = snakemake.params
i, o = snakemake.input, snakemake.output
out = constrained.compare(
    tables.read_table(i.samples, tables.STRUCTURED_SAMPLES),
    tables.read_table(i.constrained, tables.STRUCTURED_SAMPLES),
    tables.read_table(i.exact, tables.STRUCTURED_EXACT),
    forms.make_form(**p.form),
    p.grid_step,
)
meta = {"grid_step": p.grid_step}
tables.write_table(out["curves"], o.curves, tables.STRUCTURED_CURVES, meta)
tables.write_table(out["exact_curves"], o.exact_curves, tables.STRUCTURED_EXACT_CURVES, meta)
tables.write_table(out["bounds"], o.blanks, tables.STRUCTURED_BOUNDS, meta)
write_atomic(o.blanks_csv, out["bounds"].write_csv())
write_atomic(o.inside, out["inside"].write_csv())
write_atomic(o.conformance, out["conformance"].write_csv())
write_atomic(o.summary, out["summary"].write_csv())
with pl.Config(tbl_rows=200, tbl_cols=-1, tbl_width_chars=250):
    print(out["summary"])
    print(out["inside"])
    print(out["bounds"].drop("string"))
