rule prepare_dataset:
    input:
        unpack(dataset_files),
    output:
        questions="results/datasets/{dataset}.parquet",
        rejects="results/datasets/{dataset}.rejects.parquet",
    log:
        "results/logs/prepare_dataset/{dataset}.log",
    benchmark:
        "results/benchmarks/prepare_dataset/{dataset}.tsv"
    conda:
        "../envs/critical-windows.yaml"
    params:
        entry=lambda wildcards: DATASET_ENTRIES[wildcards.dataset],
        source=config["dataset_source"],
        questions_per_dataset=config["questions_per_dataset"],
        seed=config["seed"],
        bad_rows=config["bad_rows"],
        code=stage_code("prepare_dataset"),
    script:
        "../scripts/prepare_dataset.py"
