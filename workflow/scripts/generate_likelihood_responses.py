"""Rule generate_likelihood_responses: every prompt's response, sampled from the aligned
model where its source has none."""

import logging
import sys
from pathlib import Path

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)
logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(asctime)s %(message)s")

from critical_windows.engine.types import Sampling
from critical_windows.experiments.likelihood import detector
from critical_windows.experiments.prefill import attack
from critical_windows.io import tables

p = snakemake.params
gen = attack.make_generator(
    model_path=p.model_path,
    revision=p.revision,
    sampling=p.sampling,
    code=p.code,
    journal_dir=Path(p.journal),
    label="aligned",
    **p.settings,
)
responses = detector.generate_responses(
    gen,
    tables.read_table(snakemake.input.prompts, tables.LIKELIHOOD_PROMPTS),
    system_prompt=p.system_prompt,
    sampling=Sampling(**p.sampling),
    seed=p.settings["seed"],
)
meta = {"model_path": p.model_path, "system_prompt": p.system_prompt, "sampling": p.sampling}
tables.write_table(responses, snakemake.output[0], tables.LIKELIHOOD_RESPONSES, meta)
print(f"{responses.height} responses, {responses['generated'].sum()} generated")
