# The jailbreak experiments (METHOD.md §5).
# Prefill attack, on every model of `models`: harmful requests with the assistant turn
# prefilled by growing prefixes of an affirmative opener, continuations judged complied or
# refused, compliance curves and their windows (results/{model}/jailbreak/prefill/).
# Likelihood ratio: responses to jailbreak and benign prompts scored under an aligned and an
# unaligned model, ROC and TPR at fixed FPR per attack family (results/jailbreak/likelihood/).
# Input functions and targets are in common.smk.

from critical_windows.likelihood import demonstration_note, sources_from_config

JAILBREAK = config["jailbreak"]
LIKELIHOOD = config["likelihood"]
REQUEST_SETS = JAILBREAK["datasets"]
JUDGES = JAILBREAK["judges"]
PREFILL_FIGURES = ["compliance", "window_share", "request_curves"]
LIKELIHOOD_FIGURES = ["roc", "score_distributions"]
ROLES = ["aligned", "unaligned"]


wildcard_constraints:
    request_set="|".join(REQUEST_SETS),
    judge="|".join(JUDGES),
    prefill_figure="|".join(PREFILL_FIGURES),
    likelihood_figure="|".join(LIKELIHOOD_FIGURES),
    role="|".join(ROLES),


# --- prefill attack ----------------------------------------------------------------------


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
        code=code_version("datasets", "jailbreak"),
    script:
        "../scripts/prepare_jailbreak_requests.py"


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
        code=code_version("backends", "generation", "journal", "prompts", "jailbreak"),
    script:
        "../scripts/sample_jailbreak_prefills.py"


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
        code=code_version(
            "backends", "generation", "journal", "prompts", "judges", "jailbreak"
        ),
    script:
        "../scripts/judge_continuations.py"


rule detect_compliance_windows:
    input:
        judged=expand(
            "results/{{model}}/jailbreak/prefill/judged/{judge}.parquet", judge=JUDGES
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
        code=code_version("windows", "jailbreak"),
    script:
        "../scripts/detect_jailbreak_windows.py"


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
        code=code_version("windows", "jailbreak"),
    script:
        "../scripts/summarize_jailbreak_prefills.py"


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
        code=code_version(
            "windows", "summary", "figures", "jailbreak", "jailbreak_views"
        ),
    script:
        "../scripts/plot_jailbreak_figure.py"


rule build_prefill_explorer:
    input:
        requests=request_tables(),
        continuations="results/{model}/jailbreak/prefill/continuations.parquet",
        judged=expand(
            "results/{{model}}/jailbreak/prefill/judged/{judge}.parquet", judge=JUDGES
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
        code=code_version("explorer", "jailbreak", "jailbreak_views"),
    script:
        "../scripts/build_jailbreak_explorer.py"


# --- likelihood ratio --------------------------------------------------------------------


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
        code=code_version("datasets", "likelihood"),
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
        code=code_version(
            "backends", "generation", "journal", "prompts", "jailbreak", "likelihood"
        ),
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
        code=code_version("prompts", "jailbreak", "likelihood"),
    script:
        "../scripts/score_likelihood_logprobs.py"


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
        code=code_version("likelihood"),
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
        code=code_version("figures", "likelihood"),
    script:
        "../scripts/plot_likelihood_figure.py"
