# The prefill attack (METHOD.md §5), on every model of `models`: harmful requests with the
# assistant turn prefilled by growing prefixes of an affirmative opener, continuations judged
# complied or refused, compliance curves and their windows (results/{model}/jailbreak/prefill/).
# Input functions and targets are in experiments.smk.

JAILBREAK = config["jailbreak"]


wildcard_constraints:
    request_set="|".join(JAILBREAK["datasets"]),
    judge="|".join(JAILBREAK["judges"]),
    prefill_figure="|".join(catalog.PREFILL_FIGURES),


rule prepare_requests:
    input:
        files="resources/datasets",
    output:
        requests="results/jailbreak/requests/{request_set}.parquet",
        rejects="results/jailbreak/requests/{request_set}.rejects.parquet",
    log:
        "results/logs/jailbreak/prepare_requests/{request_set}.log",
    benchmark:
        "results/benchmarks/jailbreak/prepare_requests/{request_set}.tsv"
    conda:
        "../envs/critical-windows.yaml"
    params:
        n=JAILBREAK["requests_per_dataset"],
        seed=config["seed"],
        bad_rows=config["bad_rows"],
        code=stage_code("prepare_requests"),
    script:
        "../scripts/prepare_requests.py"


rule sample_prefill_continuations:
    input:
        requests=request_tables(),
        model=model_input,
    output:
        "results/{model}/jailbreak/prefill/continuations.parquet",
    log:
        "results/logs/{model}/jailbreak/sample_prefill_continuations.log",
    benchmark:
        "results/benchmarks/{model}/jailbreak/sample_prefill_continuations.tsv"
    conda:
        "../envs/critical-windows.yaml"
    resources:
        gpu=1,
        mem_mb=lambda wc, attempt: 16000 * attempt,
        runtime=lambda wc, attempt: 240 * attempt,
    params:
        model_path=model_path,
        revision=lambda w: MODELS[w.model].get("revision"),
        settings=engine_settings(),
        sampling=lambda w: {
            **entry_sampling(MODELS[w.model]),
            "max_tokens": JAILBREAK["max_tokens"],
        },
        attack={
            k: JAILBREAK[k]
            for k in ("opener", "step", "samples_per_prefix", "system_prompt")
        },
        journal=lambda w: f"results/{w.model}/jailbreak/.journal/sample_prefill_continuations",
        code=stage_code("sample_prefill_continuations"),
    script:
        "../scripts/sample_prefill_continuations.py"


rule judge_continuations:
    input:
        requests=request_tables(),
        continuations="results/{model}/jailbreak/prefill/continuations.parquet",
        templates="resources/datasets/strongreject",
        judge_model=judge_input,
    output:
        "results/{model}/jailbreak/prefill/judged/{judge}.parquet",
    log:
        "results/logs/{model}/jailbreak/judge_continuations/{judge}.log",
    benchmark:
        "results/benchmarks/{model}/jailbreak/judge_continuations/{judge}.tsv"
    conda:
        "../envs/critical-windows.yaml"
    resources:
        gpu=lambda wc: int(wc.judge == "strongreject"),
        mem_mb=lambda wc, attempt: 16000 * attempt,
        runtime=lambda wc, attempt: 240 * attempt,
    params:
        phrases=JAILBREAK["refusal_phrases"],
        strongreject={
            **JAILBREAK["strongreject"],
            "model_path": entry_path(JAILBREAK["strongreject"]["model"]),
        },
        settings=engine_settings(),
        journal=lambda w: f"results/{w.model}/jailbreak/.journal/judge_{w.judge}",
        code=stage_code("judge_continuations"),
    script:
        "../scripts/judge_continuations.py"


rule detect_compliance_windows:
    input:
        judged=expand(
            "results/{{model}}/jailbreak/prefill/judged/{judge}.parquet",
            judge=JAILBREAK["judges"],
        ),
    output:
        curves="results/{model}/jailbreak/prefill/curves.parquet",
        windows="results/{model}/jailbreak/prefill/windows.parquet",
    log:
        "results/logs/{model}/jailbreak/detect_compliance_windows.log",
    benchmark:
        "results/benchmarks/{model}/jailbreak/detect_compliance_windows.tsv"
    conda:
        "../envs/critical-windows.yaml"
    params:
        opener=JAILBREAK["opener"],
        thresholds=config["windows"],
        code=stage_code("detect_compliance_windows"),
    script:
        "../scripts/detect_compliance_windows.py"


rule summarize_prefill_attack:
    input:
        curves="results/{model}/jailbreak/prefill/curves.parquet",
        windows="results/{model}/jailbreak/prefill/windows.parquet",
    output:
        csv=report(
            "results/{model}/jailbreak/prefill/summary.csv",
            caption="../report/jailbreak_summary.rst",
            category="Jailbreak: prefill attack",
            subcategory="{model}",
        ),
        md="results/{model}/jailbreak/prefill/summary.md",
    log:
        "results/logs/{model}/jailbreak/summarize_prefill_attack.log",
    benchmark:
        "results/benchmarks/{model}/jailbreak/summarize_prefill_attack.tsv"
    conda:
        "../envs/critical-windows.yaml"
    params:
        opener=JAILBREAK["opener"],
        thresholds=config["windows"],
        note=lambda w: embedded_note(w.model),
        code=stage_code("summarize_prefill_attack"),
    script:
        "../scripts/summarize_prefill_attack.py"


rule plot_prefill_figure:
    input:
        curves="results/{model}/jailbreak/prefill/curves.parquet",
        windows="results/{model}/jailbreak/prefill/windows.parquet",
    output:
        html="results/{model}/jailbreak/prefill/figures/{judge}/{prefill_figure}.html",
        png=report(
            "results/{model}/jailbreak/prefill/figures/{judge}/{prefill_figure}.png",
            caption="../report/jailbreak_prefill_figure.rst",
            category="Jailbreak: prefill attack",
            subcategory="{model}",
            labels={
                "model": "{model}",
                "judge": "{judge}",
                "figure": "{prefill_figure}",
            },
        ),
    log:
        "results/logs/{model}/jailbreak/plot_prefill_figure/{judge}/{prefill_figure}.log",
    benchmark:
        "results/benchmarks/{model}/jailbreak/plot_prefill_figure/{judge}/{prefill_figure}.tsv"
    conda:
        "../envs/critical-windows.yaml"
    params:
        opener=JAILBREAK["opener"],
        step=JAILBREAK["step"],
        note=lambda w: embedded_note(w.model),
        code=stage_code("plot_prefill_figure"),
    script:
        "../scripts/plot_prefill_figure.py"


rule build_prefill_explorer:
    input:
        requests=request_tables(),
        continuations="results/{model}/jailbreak/prefill/continuations.parquet",
        judged=expand(
            "results/{{model}}/jailbreak/prefill/judged/{judge}.parquet",
            judge=JAILBREAK["judges"],
        ),
        curves="results/{model}/jailbreak/prefill/curves.parquet",
        windows="results/{model}/jailbreak/prefill/windows.parquet",
    output:
        html=report(
            "results/{model}/jailbreak/prefill/explorer.html",
            caption="../report/jailbreak_explorer.rst",
            category="Jailbreak: prefill attack",
            subcategory="{model}",
        ),
    log:
        "results/logs/{model}/jailbreak/build_prefill_explorer.log",
    benchmark:
        "results/benchmarks/{model}/jailbreak/build_prefill_explorer.tsv"
    conda:
        "../envs/critical-windows.yaml"
    params:
        opener=JAILBREAK["opener"],
        per_dataset=JAILBREAK["explorer_requests"],
        note=lambda w: embedded_note(w.model),
        code=stage_code("build_prefill_explorer"),
    script:
        "../scripts/build_prefill_explorer.py"
