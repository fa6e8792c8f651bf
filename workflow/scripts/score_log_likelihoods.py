"""Rule score_log_likelihoods: per-segment log-probabilities of every response under one
model (aligned or unaligned)."""

import sys

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

from critical_windows.experiments.likelihood import detector
from critical_windows.io import tables

p = snakemake.params
scorer = detector.TransformersScorer(p.model_path, p.revision, p.dtype, p.batch_tokens)
logprobs = detector.score_responses(
    scorer,
    tables.read_table(snakemake.input.responses, tables.LIKELIHOOD_RESPONSES),
    role=snakemake.wildcards.role,
    system_prompt=p.system_prompt,
)
meta = {
    "model_path": p.model_path,
    "system_prompt": p.system_prompt,
    "tokenizer": detector.tokenizer_digest(scorer.tokenizer),
}
tables.write_table(logprobs, snakemake.output[0], tables.LIKELIHOOD_LOGPROBS, meta)
print(f"{logprobs.height} responses scored on {scorer.device}")
