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
