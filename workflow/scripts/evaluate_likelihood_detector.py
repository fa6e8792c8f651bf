"""Rule evaluate_likelihood_detector: detector scores, ROC curves and TPR at fixed FPR."""

import sys

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

import polars as pl

from critical_windows import likelihood, tables
from critical_windows.summary import write_atomic

p = snakemake.params
likelihood.check_tokenizers(snakemake.input.aligned, snakemake.input.unaligned)
scores = likelihood.detector_scores(
    tables.read_table(snakemake.input.responses, likelihood.RESPONSES),
    tables.read_table(snakemake.input.aligned, likelihood.LOGPROBS),
    tables.read_table(snakemake.input.unaligned, likelihood.LOGPROBS),
)
roc, table = likelihood.evaluate(scores, p.fprs, note=p.note)
tables.write_table(scores, snakemake.output.scores, likelihood.SCORES, {"note": p.note})
tables.write_table(roc, snakemake.output.roc, likelihood.ROC, {"note": p.note})
write_atomic(snakemake.output.csv, table.write_csv())
write_atomic(snakemake.output.md, likelihood.to_markdown(table, p.fprs, p.roles))
with pl.Config(tbl_rows=-1, tbl_cols=-1, tbl_width_chars=200):
    print(table)
