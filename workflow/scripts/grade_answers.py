"""Rule grade_answers: extract, compare and flag the elicited answers of one dataset."""

import logging
import sys
from pathlib import Path

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

from critical_windows.grading import audit, equivalence, grader
from critical_windows.io import tables

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

questions = tables.read_table(snakemake.input.questions, tables.QUESTIONS)
elicited = tables.read_table(snakemake.input.elicited, tables.ELICITED)
result = grader.grade_and_audit(
    questions, elicited, cache=Path(snakemake.params.cache), processes=snakemake.threads
)
# The audit's counts travel with the graded table, for the run's summary.
tables.write_table(
    result.graded,
    snakemake.output.graded,
    tables.GRADED,
    {"method": equivalence.METHOD, "audit": result.audit_rates.to_dicts()},
)
grader.write_summary_csv(result.missing, snakemake.output.missing)
audit.write_csv(result.audit, snakemake.output.audit)
