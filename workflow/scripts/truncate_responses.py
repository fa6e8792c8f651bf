"""Rule truncate_responses: the prefixes of every base response, per level, for every
dataset of a model in one job (loading a tokenizer costs more than truncating)."""

import sys
from pathlib import Path

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

from critical_windows.cot.generation import truncate_responses
from critical_windows.engine.registry import load_tokenizer
from critical_windows.io import tables

tokenizer = load_tokenizer(snakemake.params.model_path, snakemake.params.revision)
for out in snakemake.output:
    dataset = Path(out).parent.name
    base = tables.read_table(snakemake.input[f"base_{dataset}"], tables.BASE)
    meta = {"levels": snakemake.params.levels, "model_path": snakemake.params.model_path}
    cuts = snakemake.params.cuts
    if hasattr(snakemake.input, f"resampled_{dataset}"):  # a Namedlist: `in` tests paths
        # sampling_strategy "adaptive": the levels the resampling stage chose, per question
        from critical_windows.cot.adaptive import truncate_at_sampled_levels

        resampled = tables.read_table(snakemake.input[f"resampled_{dataset}"], tables.RESAMPLED)
        truncated = truncate_at_sampled_levels(base, resampled, tokenizer, cuts)
        meta["levels"] = "adaptive"
    else:
        truncated = truncate_responses(
            base, snakemake.params.levels, tokenizer, cuts, snakemake.params.reasoning
        )
    if cuts["unit"] != "fraction":
        meta["cuts"] = cuts
        if meta["levels"] != "adaptive":
            meta["levels"] = None  # the units, not the grid, say where the cuts are
    tables.write_table(truncated, out, tables.TRUNCATED, meta)
    print(f"{dataset}: {len(truncated)} prefixes of {len(base)} responses")
