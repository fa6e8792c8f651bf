"""Rule prepare_likelihood_prompts: the jailbreak and benign prompts of every source."""

import sys

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

from pathlib import Path

import polars as pl

from critical_windows.experiments.likelihood import detector, sources
from critical_windows.io import tables

p = snakemake.params
requests = [tables.read_table(f, tables.REQUESTS) for f in snakemake.input.get("requests", [])]
prompts = detector.prepare_prompts(
    [sources.Source(**s) for s in p.sources],
    requests=pl.concat(requests) if requests else pl.from_arrow(tables.REQUESTS.empty_table()),
    questions={
        Path(f).stem: tables.read_table(f, tables.QUESTIONS) for f in snakemake.input.questions
    },
    opener=p.opener,
    seed=p.seed,
)
tables.write_table(prompts, snakemake.output[0], tables.LIKELIHOOD_PROMPTS, {"sources": p.sources})
print(prompts.group_by("label", "family").len().sort("label", "family"))
