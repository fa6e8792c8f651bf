"""Rule evaluate_likelihood_detector: detector scores, ROC curves and TPR at fixed FPR."""

import sys

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

import polars as pl

from critical_windows.experiments.likelihood import detector
from critical_windows.io import tables
from critical_windows.io.atomic import write_atomic

p = snakemake.params
detector.check_tokenizers(snakemake.input.aligned, snakemake.input.unaligned)
scores = detector.detector_scores(
    tables.read_table(snakemake.input.responses, tables.LIKELIHOOD_RESPONSES),
    tables.read_table(snakemake.input.aligned, tables.LIKELIHOOD_LOGPROBS),
    tables.read_table(snakemake.input.unaligned, tables.LIKELIHOOD_LOGPROBS),
)
roc, table = detector.evaluate(scores, p.fprs, note=p.note)
tables.write_table(scores, snakemake.output.scores, tables.LIKELIHOOD_SCORES, {"note": p.note})
tables.write_table(roc, snakemake.output.roc, tables.LIKELIHOOD_ROC, {"note": p.note})
write_atomic(snakemake.output.csv, table.write_csv())
write_atomic(snakemake.output.md, detector.to_markdown(table, p.fprs, p.roles))
with pl.Config(tbl_rows=-1, tbl_cols=-1, tbl_width_chars=200):
    print(table)
