# The synthetic model's windows are known exactly (METHOD.md §4): score the detector.


rule score_windows:
    input:
        questions=dataset_tables(),
        base=model_tables("base"),
        truncated=model_tables("truncated"),
        windows=model_tables("windows"),
        readout_windows=model_tables("readout_windows"),
    output:
        scorecard=report(
            "results/{model}/scorecard.csv",
            caption="../report/scorecard.rst",
            category="Synthetic ground truth",
            subcategory="{model}",
        ),
        truth="results/{model}/truth.parquet",
    log:
        "results/logs/score_windows/{model}.log",
    benchmark:
        "results/benchmarks/score_windows/{model}.tsv"
    conda:
        "../envs/critical-windows.yaml"
    params:
        model_path=model_path,
        jump=config["windows"]["jump"],
        drop=config["windows"]["drop"],
        max_span=config["windows"].get("max_span", 0.2),
        code=stage_code("score_windows"),
    script:
        "../scripts/score_windows.py"
