"""Rule score_windows: the detected windows of a synthetic-model run against the truth."""

import sys

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)  # noqa: SIM115

import polars as pl  # noqa: E402

from critical_windows.experiments.synthetic import scorecard
from critical_windows.io import tables
from critical_windows.io.atomic import write_atomic  # noqa: E402


def read(paths, schema):
    return pl.concat([tables.read_table(p, schema) for p in paths])


params = snakemake.params
truth, card = scorecard.score_run(
    params.model_path,
    read(snakemake.input.questions, tables.QUESTIONS),
    read(snakemake.input.base, tables.BASE),
    read(snakemake.input.truncated, tables.TRUNCATED),
    read(snakemake.input.windows, tables.WINDOWS),
    jump=params.jump,
    drop=params.drop,
    max_span=params.max_span,
    readout=read(snakemake.input.readout_windows, tables.READOUT_WINDOWS),
)
meta = {
    "model_path": params.model_path,
    "jump": params.jump,
    "drop": params.drop,
    "max_span": params.max_span,
}
tables.write_table(truth, snakemake.output.truth, tables.SYNTHETIC_TRUTH, meta)
write_atomic(snakemake.output.scorecard, card.write_csv())
with pl.Config(tbl_rows=-1, tbl_cols=-1, tbl_width_chars=200):
    print(card)
