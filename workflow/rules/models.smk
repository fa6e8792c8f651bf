rule materialize_embedded_model:
    output:
        directory("results/models/embedded"),
    log:
        "results/logs/materialize_embedded_model.log",
    benchmark:
        "results/benchmarks/materialize_embedded_model.tsv"
    conda:
        "../envs/critical-windows.yaml"
    params:
        code=stage_code("materialize_embedded_model"),
    script:
        "../scripts/materialize_embedded_model.py"
