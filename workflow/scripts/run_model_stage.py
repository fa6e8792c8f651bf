"""Rules generate_base, resample_prefixes, elicit_answers: one shard, every dataset."""

import logging
import sys
from pathlib import Path

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)
logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(asctime)s %(message)s")

from critical_windows.cot.runner import run_model_stage, settings_from_params

inputs = {}
for name, path in snakemake.input.items():
    if name != "model":
        table, dataset = name.split("_", 1)
        inputs.setdefault(table, {})[dataset] = path
run_model_stage(
    snakemake.rule,
    settings_from_params(snakemake.params.settings, snakemake.params.code),
    inputs,
    {Path(p).stem: p for p in snakemake.output},
    shard=int(snakemake.wildcards.shard),
    shards=snakemake.params.shards,
    journal_dir=Path(snakemake.params.journal),
)
