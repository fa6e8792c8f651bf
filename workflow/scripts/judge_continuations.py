"""Rule judge_continuations: one judge's verdict on every continuation of a model."""

import logging
import sys
from pathlib import Path

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)
logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(asctime)s %(message)s")

import polars as pl

from critical_windows.experiments.prefill import attack
from critical_windows.io import tables

p = snakemake.params
requests = pl.concat([tables.read_table(f, tables.REQUESTS) for f in snakemake.input.requests])
continuations = tables.read_table(snakemake.input.continuations, tables.PREFILL_CONTINUATIONS)
judge = attack.make_judge(
    snakemake.wildcards.judge,
    phrases=p.phrases,
    strongreject=p.strongreject,
    templates=Path(snakemake.input.templates).parent,
    code=p.code,
    journal_dir=Path(p.journal),
    **p.settings,
)
judged = attack.judge_continuations(judge, requests, continuations)
meta = {"judge": judge.name, "judge_model": judge.model}
tables.write_table(judged, snakemake.output[0], tables.PREFILL_JUDGED, meta)
print(judged.group_by("complied").len().sort("complied"))
print(judged.group_by("missing_reason").len().sort("len", descending=True).head(5))
