# grade_answers forks worker processes only from grading.PARALLEL_FROM (64) strings or
# pairs on; a dataset with fewer elicited answers than that grades in the job's own
# process, so the job asks for one thread and two datasets grade side by side.
GRADING_PARALLEL_FROM = 64


def grading_threads():
    q = config["questions_per_dataset"]
    if q is None or ADAPTIVE or CUTS["unit"] != "fraction":
        return 4
    answers = q * (2 + len(config["levels"]) * (1 + config["samples_per_level"]))
    return 1 if answers < GRADING_PARALLEL_FROM else 4


rule grade_answers:
    input:
        questions="results/datasets/{dataset}.parquet",
        elicited="results/{model}/{dataset}/elicited.parquet",
    output:
        graded="results/{model}/{dataset}/graded.parquet",
        missing="results/{model}/{dataset}/missing.csv",
        # MATH pairs on which math-verify and the MATH normalised string comparison
        # disagree (critical_windows.audit); a header line when there are none
        audit="results/{model}/{dataset}/grading_audit.csv",
    log:
        "results/logs/grade_answers/{model}/{dataset}.log",
    benchmark:
        "results/benchmarks/grade_answers/{model}/{dataset}.tsv"
    conda:
        "../envs/critical-windows.yaml"
    threads: grading_threads()
    params:
        # math-verify results shared by every job and kept across runs; not an output,
        # because losing it only costs time.
        cache="results/.cache/equivalence.parquet",
        code=code_version(
            "extraction", "grading", "answer_forms", "audit", "math_normalize"
        ),
    script:
        "../scripts/grade_answers.py"
