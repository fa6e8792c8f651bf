rule detect_windows:
    input:
        graded=model_tables("graded"),
        truncated=model_tables("truncated"),
        base=model_tables("base"),
        elicited=model_tables("elicited"),
    output:
        curves=expand("results/{{model}}/{dataset}/curves.parquet", dataset=DATASETS),
        distributions=expand(
            "results/{{model}}/{dataset}/distributions.parquet", dataset=DATASETS
        ),
        readout_windows=expand(
            "results/{{model}}/{dataset}/readout_windows.parquet", dataset=DATASETS
        ),
        windows=expand("results/{{model}}/{dataset}/windows.parquet", dataset=DATASETS),
        importance=expand(
            "results/{{model}}/{dataset}/importance.parquet", dataset=DATASETS
        ),
    log:
        "results/logs/detect_windows/{model}.log",
    benchmark:
        "results/benchmarks/detect_windows/{model}.tsv"
    conda:
        "../envs/critical-windows.yaml"
    params:
        datasets=DATASETS,
        jump=config["windows"]["jump"],
        drop=config["windows"]["drop"],
        fdr=config["windows"]["fdr"],
        rule=config["windows"].get("rule", "steps"),
        max_span=config["windows"].get("max_span", 0.2),
        seed=config["seed"],
        code=stage_code("detect_windows"),
    script:
        "../scripts/detect_windows.py"


rule summarize_run:
    input:
        curves=model_tables("curves"),
        windows=model_tables("windows"),
        graded=model_tables("graded"),  # its metadata holds the grading audit's counts
    output:
        csv=report(
            "results/{model}/summary.csv",
            caption="../report/summary.rst",
            category="Summary",
            subcategory="{model}",
        ),
        md="results/{model}/summary.md",
    log:
        "results/logs/summarize_run/{model}.log",
    benchmark:
        "results/benchmarks/summarize_run/{model}.tsv"
    conda:
        "../envs/critical-windows.yaml"
    params:
        datasets=DATASETS,
        thresholds=config["windows"],
        code=stage_code("summarize_run"),
    script:
        "../scripts/summarize_run.py"
