# The engine's CPU threads: config engine.threads, else as many as the job can get (a local
# run gives a job at most --cores; profiles/slurm sets them per rule). Snakemake passes them
# to the job as OMP_NUM_THREADS, which the engine reads (critical_windows.engine.vllm_backend).
ENGINE_THREADS = config.get("engine", {}).get("threads") or 256
# With the forced readout (and the fixed grid), resample_prefixes also runs the
# elicitations in its own engine, whose prefix cache holds the prompt + prefix +
# continuation they extend; elicit_answers then finds them all in the journal.
FUSED_ELICITATION = config.get("elicitation") == "forced" and not ADAPTIVE


rule generate_base:
    input:
        **{f"questions_{ds}": f"results/datasets/{ds}.parquet" for ds in DATASETS},
        model=model_input,
    output:
        shard_outputs("base"),
    log:
        "results/logs/{model}/generate_base/{shard}.log",
    benchmark:
        "results/benchmarks/{model}/generate_base/{shard}.tsv"
    conda:
        "../envs/critical-windows.yaml"
    threads: ENGINE_THREADS
    resources:
        gpu=1,
        mem_mb=lambda wc, attempt: 16000 * attempt,
        runtime=lambda wc, attempt: 120 * attempt,
    params:
        settings=stage_settings,
        code=stage_code("run_model_stage"),
        journal=lambda w: f"results/{w.model}/.journal/generate_base",
        shards=config["shards"],
    script:
        "../scripts/run_model_stage.py"


# With sampling_strategy "adaptive", resample_prefixes chooses the levels itself
# (critical_windows.cot.adaptive) from the base responses, and truncate_responses then cuts at
# exactly the levels it sampled: resampled.parquet comes before truncated.parquet.


rule truncate_responses:
    input:
        **{f"base_{ds}": f"results/{{model}}/{ds}/base.parquet" for ds in DATASETS},
        **{
            f"resampled_{ds}": f"results/{{model}}/{ds}/resampled.parquet"
            for ds in (DATASETS if ADAPTIVE else [])
        },
        model=model_input,
    output:
        expand("results/{{model}}/{dataset}/truncated.parquet", dataset=DATASETS),
    log:
        "results/logs/{model}/truncate_responses.log",
    benchmark:
        "results/benchmarks/{model}/truncate_responses.tsv"
    conda:
        "../envs/critical-windows.yaml"
    params:
        levels=config["levels"],
        cuts=CUTS,
        reasoning=REASONING,
        model_path=model_path,
        revision=lambda w: MODELS[w.model].get("revision"),
        code=stage_code("truncate_responses"),
    script:
        "../scripts/truncate_responses.py"


rule resample_prefixes:
    input:
        **{f"base_{ds}": f"results/{{model}}/{ds}/base.parquet" for ds in DATASETS},
        **{
            f"truncated_{ds}": f"results/{{model}}/{ds}/truncated.parquet"
            for ds in ([] if ADAPTIVE else DATASETS)
        },
        **{
            f"questions_{ds}": f"results/datasets/{ds}.parquet"
            for ds in (DATASETS if ADAPTIVE or FUSED_ELICITATION else [])
        },
        model=model_input,
    output:
        shard_outputs("resampled"),
    log:
        "results/logs/{model}/resample_prefixes/{shard}.log",
    benchmark:
        "results/benchmarks/{model}/resample_prefixes/{shard}.tsv"
    conda:
        "../envs/critical-windows.yaml"
    threads: ENGINE_THREADS
    resources:
        gpu=1,
        mem_mb=lambda wc, attempt: 16000 * attempt,
        runtime=lambda wc, attempt: 240 * attempt,
    params:
        settings=elicitation_settings if FUSED_ELICITATION else stage_settings,
        code=stage_code("run_model_stage"),
        journal=lambda w: f"results/{w.model}/.journal/resample_prefixes",
        shards=config["shards"],
    script:
        "../scripts/run_model_stage.py"


rule elicit_answers:
    input:
        **{f"questions_{ds}": f"results/datasets/{ds}.parquet" for ds in DATASETS},
        **{
            f"{t}_{ds}": f"results/{{model}}/{ds}/{t}.parquet"
            for t in ("base", "truncated", "resampled")
            for ds in DATASETS
        },
        model=model_input,
    output:
        shard_outputs("elicited"),
    log:
        "results/logs/{model}/elicit_answers/{shard}.log",
    benchmark:
        "results/benchmarks/{model}/elicit_answers/{shard}.tsv"
    conda:
        "../envs/critical-windows.yaml"
    threads: ENGINE_THREADS
    resources:
        gpu=1,
        mem_mb=lambda wc, attempt: 16000 * attempt,
        runtime=lambda wc, attempt: 240 * attempt,
    params:
        settings=elicitation_settings,
        code=stage_code("run_model_stage"),
        journal=lambda w: f"results/{w.model}/.journal/elicit_answers",
        shards=config["shards"],
    script:
        "../scripts/run_model_stage.py"


rule gather_shards:
    input:
        lambda w: expand(
            "results/{model}/shards/{table}/{shard}/{dataset}.parquet",
            model=w.model,
            table=w.table,
            dataset=DATASETS,
            shard=SHARDS,
        ),
    output:
        expand("results/{{model}}/{dataset}/{{table}}.parquet", dataset=DATASETS),
    log:
        "results/logs/{model}/gather_shards/{table}.log",
    benchmark:
        "results/benchmarks/{model}/gather_shards/{table}.tsv"
    conda:
        "../envs/critical-windows.yaml"
    params:
        code=stage_code("gather_shards"),
    script:
        "../scripts/gather_shards.py"
