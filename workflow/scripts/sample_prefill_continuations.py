"""Rule sample_prefill_continuations: continuations of every request after every prefix."""

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
gen = attack.make_generator(
    model_path=p.model_path,
    revision=p.revision,
    sampling=p.sampling,
    code=p.code,
    journal_dir=Path(p.journal),
    label=snakemake.wildcards.model,
    **p.settings,
)
continuations = attack.sample_continuations(
    gen,
    requests,
    opener=p.attack["opener"],
    step=p.attack["step"],
    samples=p.attack["samples_per_prefix"],
    system_prompt=p.attack["system_prompt"],
)
meta = {"model_path": p.model_path, "sampling": p.sampling, **p.attack, "seed": p.settings["seed"]}
tables.write_table(continuations, snakemake.output[0], tables.PREFILL_CONTINUATIONS, meta)
print(f"{continuations.height} continuations of {requests.height} requests")
