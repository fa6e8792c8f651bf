"""Rule sample_structured_answers: many complete answers to the fill-in-the-blank form."""

import logging
import sys
from pathlib import Path

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)  # noqa: SIM115
logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(asctime)s %(message)s")

from critical_windows.engine.types import Sampling  # noqa: E402
from critical_windows.experiments.structured import forms
from critical_windows.io import tables

p = snakemake.params
samples = forms.run_sampling(
    p.model_path,
    p.revision,
    p.backend,
    p.engine,
    forms.make_form(**p.form),
    samples=p.samples,
    samples_per_request=p.samples_per_request,
    sampling=Sampling(p.temperature, p.top_p, p.max_tokens),
    seed=p.seed,
    code=p.code,
    journal_dir=Path(p.journal),
)
meta = {"model_path": p.model_path, "form": p.form, "seed": p.seed, "max_tokens": p.max_tokens}
tables.write_table(samples, snakemake.output[0], tables.STRUCTURED_SAMPLES, meta)
print(f"{samples.height} samples, {samples['conforming'].sum()} conforming")
