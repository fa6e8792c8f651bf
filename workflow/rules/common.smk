from pathlib import Path

# Only light modules of the package are imported when the workflow is parsed: the catalog
# of names and defaults, the code digests, and the config checks.
from critical_windows import catalog
from critical_windows.code_digest import stage_code as _stage_code

SCRIPTS = Path(workflow.basedir) / "workflow" / "scripts"
PACKAGE = Path(workflow.basedir) / "src" / "critical_windows"
MODELS = config["models"]
# A `datasets` entry is a built-in name or a mapping with a `name` (your own benchmark).
DATASET_ENTRIES = {
    (d if isinstance(d, str) else d["name"]): d for d in config["datasets"]
}
DATASETS = list(DATASET_ENTRIES)
# Defaults that are lists of the catalog, written there once rather than in the schema.
config["jailbreak"].setdefault("opener", catalog.OPENER)
config["jailbreak"].setdefault("refusal_phrases", list(catalog.REFUSAL_PHRASES))


def check_config(run):
    """Missing model folders and dataset files (when the workflow is parsed), hub models
    missing from the offline cache and a silent or mismatched server (when it starts to
    run): reported naming the config key, not in a job's log (critical_windows.preflight).
    """
    from critical_windows.preflight import check_config as check

    check(config, Path.cwd(), run=run)


check_config(run=False)


onstart:
    check_config(run=True)


SHARDS = [f"{i:03d}" for i in range(config["shards"])]
# Outputs of the model stages are gathered from one job per (model, shard) that covers
# every dataset, so that an engine starts once per stage, not once per dataset.
SHARD_TABLES = ["base", "resampled", "elicited"]


wildcard_constraints:
    model="|".join(map(re.escape, MODELS)),
    dataset="|".join(map(re.escape, DATASETS)),
    shard=r"\d{3}",
    table="|".join(SHARD_TABLES),


def stage_code(script):
    """Digest of a rule's script and of every module of this checkout's package that it
    imports (critical_windows.code_digest), so that editing one of them re-runs the rule.
    """
    return _stage_code(SCRIPTS / f"{script}.py", PACKAGE)


def entry_path(entry):
    """The folder or hub id an engine loads for a model entry ({path, revision}: one of
    `models`, or a model of the jailbreak experiments)."""
    return "results/models/embedded" if entry["path"] == "embedded" else entry["path"]


def entry_input(entry):
    """The embedded model's folder is built by a rule; hub ids and folders are inputs as
    they are; the synthetic model's source is its weights: editing it re-runs its stages.
    """
    path = entry["path"]
    if path == "embedded":
        return ["results/models/embedded"]
    if is_synthetic(path):
        return [
            str(Path(workflow.basedir) / "src/critical_windows/engine/synthetic.py")
        ]
    return [path] if Path(path).exists() else []


def model_path(wildcards):
    """The folder or hub id the engine loads for {model}."""
    return entry_path(MODELS[wildcards.model])


def model_input(wildcards):
    """The input files of {model} (entry_input)."""
    return entry_input(MODELS[wildcards.model])


def is_synthetic(path):
    """Whether a model path names the synthetic model of critical_windows.engine.synthetic."""
    return path == "synthetic" or path.startswith("synthetic:")


def dataset_files(wildcards):
    """The shipped files for a built-in benchmark; the file itself for your own local one
    (a hub dataset has no input file)."""
    entry = DATASET_ENTRIES[wildcards.dataset]
    if isinstance(entry, str):
        return {"files": "resources/datasets"}
    return {"own": entry["path"]} if entry.get("path") else {}


def dataset_tables(wildcards=None):
    return expand("results/datasets/{dataset}.parquet", dataset=DATASETS)


def model_tables(table):
    """Input function: one table for every dataset of {model}."""

    def inputs(wildcards):
        return expand(
            "results/{model}/{dataset}/{table}.parquet",
            model=wildcards.model,
            dataset=DATASETS,
            table=table,
        )

    return inputs


def shard_outputs(table):
    return expand(
        "results/{{model}}/shards/{table}/{{shard}}/{dataset}.parquet",
        table=table,
        dataset=DATASETS,
    )


def entry_sampling(entry):
    """temperature and top_p for a model entry: the config's, else its generation_config,
    else the protocol's (critical_windows.cot.readout.model_sampling). The embedded and the
    synthetic model ship none."""
    from critical_windows.cot.readout import model_sampling

    path = entry["path"]
    lookup = None if path == "embedded" or is_synthetic(path) else path
    return model_sampling(config["sampling"], lookup, entry.get("revision"))


def stage_settings(wildcards):
    """The config as the model stages see it (see generation.StageSettings)."""
    model = MODELS[wildcards.model]
    return {
        "model": wildcards.model,
        "model_path": model_path(wildcards),
        "revision": model.get("revision"),
        "backend": config["backend"],
        "engine": config["engine"],
        **entry_sampling(model),
        "max_tokens": config["sampling"]["max_tokens"],
        "seed": config["seed"],
        "samples_per_level": config["samples_per_level"],
        "elicitation_max_tokens": config["elicitation_max_tokens"],
        "batch_size": config["batch_size"],
        **adaptive_settings(),
        **server_settings(model),
        **({"reasoning": REASONING} if REASONING != "auto" else {}),
    }


def elicitation_settings(wildcards):
    """stage_settings of elicit_answers: with the readout (critical_windows.cot.readout) when it
    is not the research protocol's, so that followup + greedy runs keep their params."""
    readout = {
        key: config[key]
        for key, default in (("elicitation", "followup"), ("answer_readout", "greedy"))
        if config[key] != default
    }
    return {**stage_settings(wildcards), **readout}


def server_settings(model):
    """The server of backend "openai"; nothing for the in-process backends, so that their
    runs keep their params."""
    if config["backend"] != "openai":
        return {}
    return {
        "server": config.get("server", {}),
        "served_model": model.get("served_model"),
    }


def adaptive_settings():
    """The adaptive sampling settings of the resampling stage; nothing for the fixed grid,
    so that fixed runs keep their params."""
    if not ADAPTIVE:
        return {}
    return {
        "sampling_strategy": "adaptive",
        "adaptive": {
            **config.get("adaptive", {}),
            "jump": config["windows"]["jump"],
            "drop": config["windows"]["drop"],
        },
        # unit cuts: the candidates adaptive sampling chooses from
        **({"cuts": CUTS} if CUTS["unit"] != "fraction" else {}),
    }


ADAPTIVE = config.get("sampling_strategy", "fixed") == "adaptive"
# Where responses are cut (critical_windows.cot.segmentation): the `levels` grid or units.
CUTS = {"unit": "fraction", "every": 1, "max": None, **config.get("cuts", {})}
# YAML reads an unquoted `reasoning: off` as a boolean.
REASONING = {True: "on", False: "off"}.get(config["reasoning"], config["reasoning"])


def grading_threads():
    """grade_answers forks worker processes only from catalog.GRADING_PARALLEL_FROM MATH
    strings or pairs on: a dataset with fewer elicited answers grades in the job's own
    process, so the job asks for one thread and two datasets grade side by side."""
    q = config["questions_per_dataset"]
    if q is None or ADAPTIVE or CUTS["unit"] != "fraction":
        return 4
    answers = q * (2 + len(config["levels"]) * (1 + config["samples_per_level"]))
    return 1 if answers < catalog.GRADING_PARALLEL_FROM else 4


def check_readout():
    """Responses that the context would cut: refused now (critical_windows.cot.readout)."""
    from critical_windows.cot.readout import check_config as check

    check(config)


check_readout()


def final_targets():
    """What the experiments of config["experiments"] produce. Chain of thought: summary,
    explorer and every figure of every model (catalog.FIGURES), and the scorecard
    of a synthetic model; the other experiments' targets are in experiments.smk."""
    targets = []
    if "structured" in config["experiments"]:
        targets += structured_targets()
    if "prefill_attack" in config["experiments"]:
        targets += prefill_targets()
    if "likelihood_ratio" in config["experiments"]:
        targets += likelihood_targets()
    if "chain_of_thought" not in config["experiments"]:
        return targets
    for model in MODELS:
        if is_synthetic(MODELS[model]["path"]):
            targets.append(f"results/{model}/scorecard.csv")
        targets += [
            f"results/{model}/summary.csv",
            f"results/{model}/summary.md",
            f"results/{model}/explorer.html",
        ]
        targets += expand(
            "results/{model}/figures/{figure}.{ext}",
            model=model,
            figure=catalog.FIGURES,
            ext=["html", "png"],
        )
    return targets


def engine_settings():
    """What every jailbreak stage that loads an engine needs from the config."""
    return {k: config[k] for k in ("backend", "engine", "seed", "batch_size")}
