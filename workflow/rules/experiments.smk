# Targets and input functions of the experiments beside chain of thought (their rules are
# in structured.smk, prefill.smk and likelihood.smk; `snakemake --lint` wants functions
# apart from rules).


# --- structured output (structured.smk) ---------------------------------------


def structured_targets():
    """Blanks table, conformance and the figures of the top strings of every model, of the
    structured-output experiment (structured.smk)."""
    targets = expand(
        "results/structured/{model}/{name}",
        model=MODELS,
        name=["blanks.csv", "conformance.csv", "inside.csv", "summary.csv"],
    )
    return targets + expand(
        "results/structured/{model}/figures/string_{rank}.{ext}",
        model=MODELS,
        rank=range(1, config["structured"]["strings_drawn"] + 1),
        ext=["html", "png"],
    )


# --- prefill attack (prefill.smk) ---------------------------------------------


def prefill_targets():
    """Summary, explorer and figures (per judge) of the prefill attack on every model."""
    targets = []
    for model in MODELS:
        base = f"results/{model}/jailbreak/prefill"
        targets += [
            f"{base}/summary.csv",
            f"{base}/summary.md",
            f"{base}/explorer.html",
        ]
        targets += expand(
            "{base}/figures/{judge}/{figure}.{ext}",
            base=base,
            judge=config["jailbreak"]["judges"],
            figure=catalog.PREFILL_FIGURES,
            ext=["html", "png"],
        )
    return targets


def embedded_note(model):
    """The note that a run of the embedded model demonstrates the mechanism only."""
    return catalog.EMBEDDED_NOTE if MODELS[model]["path"] == "embedded" else None


def request_tables(wildcards=None):
    return expand(
        "results/jailbreak/requests/{request_set}.parquet",
        request_set=config["jailbreak"]["datasets"],
    )


def judge_input(wildcards):
    """The judge model of the StrongREJECT judge; nothing for the refusal phrases."""
    if wildcards.judge == "strongreject":
        return entry_input(config["jailbreak"]["strongreject"]["model"])
    return []


# --- likelihood ratio (likelihood.smk) ----------------------------------------


def likelihood_targets():
    """Detection table and figures of the likelihood-ratio experiment."""
    base = "results/jailbreak/likelihood"
    return [f"{base}/detection.csv", f"{base}/detection.md"] + expand(
        "{base}/figures/{figure}.{ext}",
        base=base,
        figure=catalog.LIKELIHOOD_FIGURES,
        ext=["html", "png"],
    )


def likelihood_prompt_inputs(wildcards):
    """Harmful requests for a prefill-attack source, benchmark questions for a benchmark
    source (which must be among `datasets`)."""
    from critical_windows.experiments.likelihood.sources import sources_from_config

    sources = sources_from_config(config["likelihood"])
    inputs = {}
    if any(s.kind == "prefill_attack" for s in sources):
        inputs["requests"] = request_tables()
    wanted = sorted({s.dataset for s in sources if s.kind == "benchmark"})
    if unknown := [d for d in wanted if d not in DATASETS]:
        raise ValueError(
            f"likelihood.benign: benchmark datasets {unknown} are not in `datasets` "
            f"({DATASETS}); add them there"
        )
    inputs["questions"] = expand("results/datasets/{dataset}.parquet", dataset=wanted)
    return inputs
