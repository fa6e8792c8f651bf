# The structured-output experiment (METHOD.md §3): a fill-in-the-blank form answered by the
# unconstrained model (how often it keeps the form) and by a sampler constrained to the
# form; the exact P(s | prefix) of every string by teacher forcing beside the constrained
# samples' estimate, against the theory's bounds per blank.

STRUCTURED = config["structured"]
STRUCTURED_FORM = {k: STRUCTURED[k] for k in ("prompt", "blanks", "prefill")}
if "structured" in config["experiments"]:
    from critical_windows.experiments.structured.forms import make_form

    make_form(**STRUCTURED_FORM)  # a bad form is refused when the workflow starts


wildcard_constraints:
    rank=r"[1-9]\d*",


rule sample_structured_answers:
    input:
        model=model_input,
    output:
        "results/structured/{model}/samples.parquet",
    log:
        "results/logs/structured/{model}/sample_structured_answers.log",
    benchmark:
        "results/benchmarks/structured/{model}/sample_structured_answers.tsv"
    conda:
        "../envs/critical-windows.yaml"
    resources:
        gpu=1,
        mem_mb=lambda wc, attempt: 16000 * attempt,
        runtime=lambda wc, attempt: 120 * attempt,
    params:
        model_path=model_path,
        revision=lambda w: MODELS[w.model].get("revision"),
        backend=config["backend"],
        engine=config["engine"],
        form=STRUCTURED_FORM,
        samples=STRUCTURED["samples"],
        samples_per_request=STRUCTURED["samples_per_request"],
        max_tokens=STRUCTURED["max_tokens"],
        temperature=lambda w: entry_sampling(MODELS[w.model])["temperature"],
        top_p=lambda w: entry_sampling(MODELS[w.model])["top_p"],
        seed=config["seed"],
        journal=lambda w: f"results/structured/{w.model}/.journal",
        code=stage_code("sample_structured_answers"),
    script:
        "../scripts/sample_structured_answers.py"


rule constrain_structured_answers:
    input:
        model=model_input,
    output:
        samples="results/structured/{model}/constrained.parquet",
        exact="results/structured/{model}/exact.parquet",
        agreement="results/structured/{model}/agreement.json",
    log:
        "results/logs/structured/{model}/constrain_structured_answers.log",
    benchmark:
        "results/benchmarks/structured/{model}/constrain_structured_answers.tsv"
    conda:
        "../envs/critical-windows.yaml"
    resources:
        gpu=1,
        mem_mb=lambda wc, attempt: 16000 * attempt,
        runtime=lambda wc, attempt: 120 * attempt,
    params:
        model_path=model_path,
        revision=lambda w: MODELS[w.model].get("revision"),
        backend=config["backend"],
        engine=config["engine"],
        form=STRUCTURED_FORM,
        samples=STRUCTURED["constrained_samples"],
        samples_per_request=STRUCTURED["samples_per_request"],
        temperature=lambda w: entry_sampling(MODELS[w.model])["temperature"],
        top_p=lambda w: entry_sampling(MODELS[w.model])["top_p"],
        seed=config["seed"],
        journal=lambda w: f"results/structured/{w.model}/.journal_constrained",
        code=stage_code("constrain_structured_answers"),
    script:
        "../scripts/constrain_structured_answers.py"


rule estimate_structured_curves:
    input:
        samples="results/structured/{model}/samples.parquet",
        constrained="results/structured/{model}/constrained.parquet",
        exact="results/structured/{model}/exact.parquet",
    output:
        curves="results/structured/{model}/curves.parquet",
        exact_curves="results/structured/{model}/exact_curves.parquet",
        blanks="results/structured/{model}/blanks.parquet",
        blanks_csv=report(
            "results/structured/{model}/blanks.csv",
            caption="../report/structured_blanks.rst",
            category="Structured output",
            subcategory="{model}",
        ),
        inside="results/structured/{model}/inside.csv",
        conformance="results/structured/{model}/conformance.csv",
        summary=report(
            "results/structured/{model}/summary.csv",
            caption="../report/structured_summary.rst",
            category="Structured output",
            subcategory="{model}",
        ),
    log:
        "results/logs/structured/{model}/estimate_structured_curves.log",
    benchmark:
        "results/benchmarks/structured/{model}/estimate_structured_curves.tsv"
    conda:
        "../envs/critical-windows.yaml"
    params:
        form=STRUCTURED_FORM,
        grid_step=STRUCTURED["grid_step"],
        code=stage_code("estimate_structured_curves"),
    script:
        "../scripts/estimate_structured_curves.py"


rule plot_structured_string:
    input:
        curves="results/structured/{model}/curves.parquet",
        exact_curves="results/structured/{model}/exact_curves.parquet",
        blanks="results/structured/{model}/blanks.parquet",
    output:
        html="results/structured/{model}/figures/string_{rank}.html",
        png=report(
            "results/structured/{model}/figures/string_{rank}.png",
            caption="../report/structured_string.rst",
            category="Structured output",
            subcategory="{model}",
            labels={"model": "{model}", "string": "{rank}"},
        ),
    log:
        "results/logs/structured/{model}/plot_structured_string/{rank}.log",
    benchmark:
        "results/benchmarks/structured/{model}/plot_structured_string/{rank}.tsv"
    conda:
        "../envs/critical-windows.yaml"
    params:
        code=stage_code("plot_structured_string"),
    script:
        "../scripts/plot_structured_string.py"
