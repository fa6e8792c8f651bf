rule materialize_embedded_model:
    output:
        directory("results/models/embedded"),
    params:
        code=code_version("models"),
    log:
        "results/logs/materialize_embedded_model.log",
    benchmark:
        "results/benchmarks/materialize_embedded_model.tsv"
    script:
        "../scripts/materialize_embedded_model.py"
