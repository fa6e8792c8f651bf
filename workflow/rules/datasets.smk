rule prepare_dataset:
    input:
        files="resources/datasets",
    output:
        questions="results/datasets/{dataset}.parquet",
        rejects="results/datasets/{dataset}.rejects.parquet",
    log:
        "results/logs/prepare_dataset/{dataset}.log",
    benchmark:
        "results/benchmarks/prepare_dataset/{dataset}.tsv"
    params:
        source=config["dataset_source"],
        questions_per_dataset=config["questions_per_dataset"],
        seed=config["seed"],
        bad_rows=config["bad_rows"],
        code=code_version("datasets"),
    script:
        "../scripts/prepare_dataset.py"
