"""Rule constrain_structured_answers: the exact probability of every string of the form
under the constrained sampler (teacher forcing), and constrained samples of the form."""

import json
import logging
import sys
from pathlib import Path

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)  # noqa: SIM115
logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(asctime)s %(message)s")

from critical_windows.engine.journal import Journal  # noqa: E402
from critical_windows.engine.types import Sampling  # noqa: E402
from critical_windows.experiments.structured import constrained, forms
from critical_windows.io import tables
from critical_windows.io.atomic import write_atomic  # noqa: E402

p = snakemake.params
form = forms.make_form(**p.form)
backend = constrained.load_engine(p.model_path, p.revision, p.backend, p.engine, form)
drawn, exact, trie = constrained.run_exact(
    backend,
    Journal(Path(p.journal)),
    form,
    samples=p.samples,
    samples_per_request=p.samples_per_request,
    sampling=Sampling(p.temperature, p.top_p),
    seed=p.seed,
    context=f"{p.model_path}|{p.revision}|{backend.name}|{p.code}",
)
meta = {"model_path": p.model_path, "form": p.form, "seed": p.seed, "trie": trie.digest()}
meta |= {"temperature": p.temperature, "top_p": p.top_p}
tables.write_table(drawn, snakemake.output.samples, tables.STRUCTURED_SAMPLES, meta)
tables.write_table(exact, snakemake.output.exact, tables.STRUCTURED_EXACT, meta)
check = constrained.agreement(drawn, exact)
write_atomic(snakemake.output.agreement, json.dumps(check, indent=2) + "\n")
print(exact)
print(check)
