"""Checks of the config made when the workflow starts, before any job runs.

Each problem is reported with the config key it comes from: a model path that does not
exist, a hub model missing from the local cache while the hub is offline, a dataset file
that does not exist or a malformed dataset entry, and (backend "openai") a server that does
not answer or does not serve the model. Without these checks such mistakes surface deep in
a job's log, after an engine has started.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from critical_windows.data import benchmarks

_TRUE = {"1", "true", "yes", "on"}


class ConfigError(ValueError):
    """The config names something that cannot be used; the message lists every problem."""


def hub_offline() -> bool:
    """Whether the Hugging Face hub may not be contacted (HF_HUB_OFFLINE)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE


def looks_like_path(path: str) -> bool:
    """A hub id is "name" or "org/name"; anything else (absolute, ./, ~, deeper) is a path."""
    return (
        path.startswith(("/", ".", "~")) or path.count("/") > 1 or os.sep != "/" and os.sep in path
    )


def model_problem(
    key: str, path: str, revision: str | None, workdir: Path, hub: bool = True
) -> str | None:
    """What is wrong with a model's `path`, or None. "embedded" and "synthetic" are built;
    a hub id is looked up in the local cache when `hub` and the hub is offline."""
    if path == "embedded" or path == "synthetic" or path.startswith("synthetic:"):
        return None
    local = Path(path).expanduser()
    local = local if local.is_absolute() else workdir / local
    if local.exists():
        if not (local / "config.json").is_file():
            return f"{key}: {path} is a folder without config.json, not a model"
        return None
    if looks_like_path(path):
        return f"{key}: model folder {path} does not exist"
    if hub and hub_offline():
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(path, "config.json", revision=revision)
        if not isinstance(cached, str):
            return (
                f"{key}: {path} is neither a local folder nor a hub model in the local cache, "
                "and the hub is offline (HF_HUB_OFFLINE); download it first or give a folder"
            )
    return None


def dataset_problems(entries: list[Any], workdir: Path) -> list[str]:
    """Malformed entries, missing local files and repeated names of the `datasets` list."""
    problems: list[str] = []
    seen: dict[str, int] = {}
    for i, entry in enumerate(entries):
        key = f"datasets[{i}]"
        name = benchmarks.dataset_name(entry)
        if name in seen:
            problems.append(f"{key}: the name {name!r} is also datasets[{seen[name]}]")
        seen.setdefault(name, i)
        if isinstance(entry, str):
            continue
        try:
            spec = benchmarks.custom_spec(entry, key)
        except benchmarks.DatasetError as err:
            problems.append(str(err))
            continue
        if spec.path is not None:
            path = Path(spec.path).expanduser()
            if not (path if path.is_absolute() else workdir / path).is_file():
                problems.append(f"{key}.path: dataset file {spec.path} does not exist")
        elif spec.hub is not None and looks_like_path(spec.hub):
            path = Path(spec.hub).expanduser()
            if not (path if path.is_absolute() else workdir / path).is_dir():
                problems.append(f"{key}.hub: dataset folder {spec.hub} does not exist")
    return problems


def engine_path(path: str) -> str:
    """The folder or hub id the engine loads (as common.smk's model_path)."""
    return "results/models/embedded" if path == "embedded" else path


def server_problems(config: Mapping[str, Any]) -> list[str]:
    """Whether the server answers and serves every model of `models` (backend "openai")."""
    from critical_windows.engine.server import ServerError, ServerSettings, served_models

    settings = ServerSettings.from_mapping(config.get("server"))
    if not settings.check:
        return []
    try:
        served = served_models(settings)
    except ServerError as err:
        return [str(err)]
    problems = []
    for name, model in config.get("models", {}).items():
        if _synthetic(model["path"]):
            continue
        wanted = model.get("served_model") or engine_path(model["path"])
        if wanted not in served:
            key = f"models.{name}.served_model" if model.get("served_model") else f"models.{name}"
            problems.append(
                f"{key}: the server at {settings.url} serves {served}, not {wanted!r} "
                "(set models.<name>.served_model to the name it serves)"
            )
    return problems


def _synthetic(path: str) -> bool:
    return path == "synthetic" or path.startswith("synthetic:")


def check_config(config: Mapping[str, Any], workdir: Path | str = ".", *, run: bool = True) -> None:
    """Raise `ConfigError` listing every problem found in `config`, each with its key.

    `run=False` (when the workflow is parsed, dry runs included) checks only what is local
    to this machine's files; `run=True` (when it starts running) also the hub cache and the
    server, which a dry run on a login node need not reach.
    """
    workdir = Path(workdir)
    problems = dataset_problems(list(config.get("datasets", [])), workdir)
    for name, model in config.get("models", {}).items():
        problem = model_problem(
            f"models.{name}.path", model["path"], model.get("revision"), workdir, hub=run
        )
        if problem:
            problems.append(problem)
    others = [e for e in config.get("experiments", []) if e != "chain_of_thought"]
    if config.get("backend") == "openai" and others:
        problems.append(
            f"backend: openai with experiments {others}: only the chain-of-thought stages "
            "send their requests to the server; run those experiments with backend vllm "
            "or transformers"
        )
    if run and config.get("backend") == "openai":
        problems += server_problems(config)
    if problems:
        raise ConfigError("the config cannot be run:\n  " + "\n  ".join(problems))
