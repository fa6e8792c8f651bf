"""Rule grade_answers: extract, compare and flag the elicited answers of one dataset."""

import logging
import sys
from pathlib import Path

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

from critical_windows import grading, tables

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

questions = tables.read_table(snakemake.input.questions, tables.QUESTIONS)
elicited = tables.read_table(snakemake.input.elicited, tables.ELICITED)
graded, missing = grading.grade(
    questions, elicited, cache=Path(snakemake.params.cache), processes=snakemake.threads
)
tables.write_table(graded, snakemake.output.graded, tables.GRADED, {"method": grading.METHOD})
grading.write_summary_csv(missing, snakemake.output.missing)
