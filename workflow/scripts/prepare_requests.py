"""Rule prepare_requests: one harmful-request dataset as the normalised requests table."""

import sys
from pathlib import Path

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

from critical_windows.data import harmful
from critical_windows.io import tables

p = snakemake.params
requests, rejects = harmful.prepare_requests(
    snakemake.wildcards.request_set,
    resources=Path(snakemake.input.files),
    n=p.n,
    seed=p.seed,
    bad_rows=p.bad_rows,
)
meta = {"source": "bundled", "seed": p.seed, "n": p.n}
tables.write_table(requests, snakemake.output.requests, tables.REQUESTS, meta)
tables.write_table(rejects, snakemake.output.rejects, tables.REJECTS, meta)
print(f"{len(requests)} requests, {len(rejects)} rejected rows")
