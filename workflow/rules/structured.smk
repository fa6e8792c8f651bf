# The structured-output experiment (METHOD.md §3): fill-in-the-blank answers sampled many
# times, P(s | prefix) of each distinct answer against the theory's bounds per blank.

STRUCTURED = config["structured"]
STRUCTURED_FORM = {k: STRUCTURED[k] for k in ("prompt", "blanks", "prefill")}


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
        temperature=config["sampling"]["temperature"],
        top_p=config["sampling"]["top_p"],
        seed=config["seed"],
        journal=lambda w: f"results/structured/{w.model}/.journal",
        code=code_version("backends", "journal", "prompts", "structured"),
    script:
        "../scripts/sample_structured_answers.py"


rule estimate_structured_curves:
    input:
        "results/structured/{model}/samples.parquet",
    output:
        curves="results/structured/{model}/curves.parquet",
        blanks="results/structured/{model}/blanks.parquet",
        blanks_csv=report(
            "results/structured/{model}/blanks.csv",
            caption="../report/structured_blanks.rst",
            category="Structured output",
            subcategory="{model}",
        ),
        conformance="results/structured/{model}/conformance.csv",
    log:
        "results/logs/structured/{model}/estimate_structured_curves.log",
    benchmark:
        "results/benchmarks/structured/{model}/estimate_structured_curves.tsv"
    conda:
        "../envs/critical-windows.yaml"
    params:
        form=STRUCTURED_FORM,
        grid_step=STRUCTURED["grid_step"],
        code=code_version("structured"),
    script:
        "../scripts/estimate_structured_curves.py"


rule plot_structured_string:
    input:
        curves="results/structured/{model}/curves.parquet",
        blanks="results/structured/{model}/blanks.parquet",
        conformance="results/structured/{model}/conformance.csv",
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
        code=code_version("structured", "summary"),
    script:
        "../scripts/plot_structured_string.py"
