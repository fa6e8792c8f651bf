# Likelihood-ratio detection (METHOD.md §5): responses to jailbreak and benign prompts scored
# under an aligned and an unaligned model, ROC and TPR at fixed FPR per attack family
# (results/jailbreak/likelihood/). Input functions and targets are in experiments.smk.

from critical_windows.experiments.likelihood.sources import ROLES
from critical_windows.experiments.likelihood.sources import demonstration_note
from critical_windows.experiments.likelihood.sources import sources_from_config

LIKELIHOOD = config["likelihood"]


wildcard_constraints:
    likelihood_figure="|".join(catalog.LIKELIHOOD_FIGURES),
    role="|".join(ROLES),


rule prepare_likelihood_prompts:
    input:
        unpack(likelihood_prompt_inputs),
    output:
        "results/jailbreak/likelihood/prompts.parquet",
    log:
        "results/logs/jailbreak/likelihood/prepare_likelihood_prompts.log",
    benchmark:
        "results/benchmarks/jailbreak/likelihood/prepare_likelihood_prompts.tsv"
    conda:
        "../envs/critical-windows.yaml"
    params:
        sources=[s.__dict__ for s in sources_from_config(LIKELIHOOD)],
        opener=JAILBREAK["opener"],
        seed=config["seed"],
        code=stage_code("prepare_likelihood_prompts"),
    script:
        "../scripts/prepare_likelihood_prompts.py"


rule generate_likelihood_responses:
    input:
        prompts="results/jailbreak/likelihood/prompts.parquet",
        model=entry_input(LIKELIHOOD["aligned"]),
    output:
        "results/jailbreak/likelihood/responses.parquet",
    log:
        "results/logs/jailbreak/likelihood/generate_likelihood_responses.log",
    benchmark:
        "results/benchmarks/jailbreak/likelihood/generate_likelihood_responses.tsv"
    conda:
        "../envs/critical-windows.yaml"
    resources:
        gpu=1,
        mem_mb=lambda wc, attempt: 16000 * attempt,
        runtime=lambda wc, attempt: 120 * attempt,
    params:
        model_path=lambda w: entry_path(LIKELIHOOD["aligned"]),
        revision=LIKELIHOOD["aligned"]["revision"],
        system_prompt=LIKELIHOOD["aligned"]["system_prompt"],
        settings=engine_settings(),
        sampling={
            **entry_sampling(LIKELIHOOD["aligned"]),
            "max_tokens": LIKELIHOOD["max_tokens"],
        },
        journal="results/jailbreak/likelihood/.journal/generate_likelihood_responses",
        code=stage_code("generate_likelihood_responses"),
    script:
        "../scripts/generate_likelihood_responses.py"


rule score_log_likelihoods:
    input:
        responses="results/jailbreak/likelihood/responses.parquet",
        model=lambda w: entry_input(LIKELIHOOD[w.role]),
    output:
        "results/jailbreak/likelihood/logprobs/{role}.parquet",
    log:
        "results/logs/jailbreak/likelihood/score_log_likelihoods/{role}.log",
    benchmark:
        "results/benchmarks/jailbreak/likelihood/score_log_likelihoods/{role}.tsv"
    conda:
        "../envs/critical-windows.yaml"
    resources:
        gpu=1,
        mem_mb=lambda wc, attempt: 32000 * attempt,
        runtime=lambda wc, attempt: 120 * attempt,
    params:
        model_path=lambda w: entry_path(LIKELIHOOD[w.role]),
        revision=lambda w: LIKELIHOOD[w.role]["revision"],
        system_prompt=lambda w: LIKELIHOOD[w.role]["system_prompt"],
        dtype=LIKELIHOOD["dtype"],
        batch_tokens=LIKELIHOOD["batch_tokens"],
        code=stage_code("score_log_likelihoods"),
    script:
        "../scripts/score_log_likelihoods.py"


rule evaluate_likelihood_detector:
    input:
        responses="results/jailbreak/likelihood/responses.parquet",
        aligned="results/jailbreak/likelihood/logprobs/aligned.parquet",
        unaligned="results/jailbreak/likelihood/logprobs/unaligned.parquet",
    output:
        scores="results/jailbreak/likelihood/scores.parquet",
        roc="results/jailbreak/likelihood/roc.parquet",
        csv=report(
            "results/jailbreak/likelihood/detection.csv",
            caption="../report/jailbreak_detection.rst",
            category="Jailbreak: likelihood ratio",
        ),
        md="results/jailbreak/likelihood/detection.md",
    log:
        "results/logs/jailbreak/likelihood/evaluate_likelihood_detector.log",
    benchmark:
        "results/benchmarks/jailbreak/likelihood/evaluate_likelihood_detector.tsv"
    conda:
        "../envs/critical-windows.yaml"
    params:
        fprs=LIKELIHOOD["fprs"],
        roles={role: LIKELIHOOD[role] for role in ROLES},
        note=demonstration_note(LIKELIHOOD["aligned"], LIKELIHOOD["unaligned"]),
        code=stage_code("evaluate_likelihood_detector"),
    script:
        "../scripts/evaluate_likelihood_detector.py"


rule plot_likelihood_figure:
    input:
        scores="results/jailbreak/likelihood/scores.parquet",
        roc="results/jailbreak/likelihood/roc.parquet",
    output:
        html="results/jailbreak/likelihood/figures/{likelihood_figure}.html",
        png=report(
            "results/jailbreak/likelihood/figures/{likelihood_figure}.png",
            caption="../report/jailbreak_likelihood_figure.rst",
            category="Jailbreak: likelihood ratio",
            labels={"figure": "{likelihood_figure}"},
        ),
    log:
        "results/logs/jailbreak/likelihood/plot_likelihood_figure/{likelihood_figure}.log",
    benchmark:
        "results/benchmarks/jailbreak/likelihood/plot_likelihood_figure/{likelihood_figure}.tsv"
    conda:
        "../envs/critical-windows.yaml"
    params:
        fprs=LIKELIHOOD["fprs"],
        roles={role: LIKELIHOOD[role] for role in ROLES},
        note=demonstration_note(LIKELIHOOD["aligned"], LIKELIHOOD["unaligned"]),
        code=stage_code("plot_likelihood_figure"),
    script:
        "../scripts/plot_likelihood_figure.py"
