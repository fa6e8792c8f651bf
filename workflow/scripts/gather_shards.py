"""Rule gather_shards: each dataset's table from the shards of a model stage."""

import sys
from pathlib import Path

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

from critical_windows.cot.runner import gather_shards

for out in snakemake.output:
    dataset = Path(out).parent.name
    shards = [p for p in snakemake.input if Path(p).stem == dataset]
    gather_shards(snakemake.wildcards.table, shards, out)
    print(f"{out}: {len(shards)} shards")
