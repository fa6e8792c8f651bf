"""The runner of the model stages: a Snakemake rule's settings in, the stage's table out
(fixed or adaptive sampling), and the gathering of shards."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import polars as pl

from critical_windows.cot import readout
from critical_windows.cot.generation import (
    Generator,
    StageSettings,
    elicit_answers,
    generate_base,
    in_shard,
    resample_prefixes,
)
from critical_windows.engine.journal import Journal
from critical_windows.engine.registry import LazyBackend, lazy_backend
from critical_windows.engine.types import Backend, EngineSettings
from critical_windows.io import tables

log = logging.getLogger(__name__)


def run_model_stage(
    stage: str,
    settings: StageSettings,
    inputs: Mapping[str, Mapping[str, str]],
    outputs: Mapping[str, str],
    shard: int,
    shards: int,
    journal_dir: Path,
    load: Callable[..., Backend] | None = None,
) -> None:
    """Run `stage` on the questions of one shard of every dataset, one engine for all.

    `inputs` maps a table name ("questions", "base", ...) to {dataset: path}; `outputs`
    maps each dataset to the path of its shard of the stage's table. The engine
    (`load`, with load_backend's arguments; default load_backend) starts only if a request
    is not in the journal yet (engine.registry.LazyBackend).
    """
    schemas = {
        "questions": tables.QUESTIONS,
        "base": tables.BASE,
        "truncated": tables.TRUNCATED,
        "resampled": tables.RESAMPLED,
    }
    frames = {
        ds: {
            name: tables.read_table(paths[ds], schemas[name]).filter(
                pl.col("question_id").map_elements(
                    lambda q: in_shard(q, shard, shards), return_dtype=pl.Boolean
                )
            )
            for name, paths in inputs.items()
        }
        for ds in outputs
    }
    check_readout(settings, frames)
    backend = lazy_backend(
        settings.backend,
        settings.model_path,
        settings.engine,
        settings.revision,
        server=settings.server,
        served_model=settings.served_model,
        load=load,
    )
    gen = Generator(backend, Journal(journal_dir), settings)
    # One pass over all datasets at once, so that batches are full; split afterwards.
    f = {name: pl.concat([frames[ds][name] for ds in outputs]) for name in inputs}
    log.info("%s: shard %d/%d, datasets %s", stage, shard, shards, ", ".join(outputs))
    if stage == "generate_base":
        table, schema = generate_base(gen, f["questions"]), tables.BASE
    elif stage == "resample_prefixes" and settings.sampling_strategy == "adaptive":
        from critical_windows.cot import adaptive

        # The in-stage elicitations are those elicit_answers sends: share its journal.
        judge = Generator(backend, Journal(journal_dir.parent / "elicit_answers"), settings)
        knobs = adaptive.AdaptiveSettings.from_mapping(settings.adaptive)
        table = adaptive.resample_adaptive(
            gen, f["questions"], f["base"], knobs, judge=judge, cuts=settings.cuts
        )
        schema = tables.RESAMPLED
    elif stage == "resample_prefixes":
        table, schema = resample_prefixes(gen, f["base"], f["truncated"]), tables.RESAMPLED
        if settings.elicitation == "forced":
            # Forced prompts extend the continuations token for token: elicit in this
            # engine, whose prefix cache still holds them, into elicit_answers' journal,
            # which then finds every request done (workflow/rules/generation.smk).
            judge = Generator(backend, Journal(journal_dir.parent / "elicit_answers"), settings)
            elicit_answers(judge, f["questions"], f["base"], f["truncated"], table)
    elif stage == "elicit_answers":
        table = elicit_answers(gen, f["questions"], f["base"], f["truncated"], f["resampled"])
        schema = tables.ELICITED
    else:
        raise ValueError(f"unknown model stage {stage!r}")
    if isinstance(backend, LazyBackend) and not backend.started:
        log.info("%s: every request was journaled; no engine started", stage)
    for ds, path in outputs.items():
        ids = frames[ds]["questions" if "questions" in inputs else "base"]["question_id"]
        part = table.filter(pl.col("question_id").is_in(ids.implode()))
        tables.write_table(part, path, schema, {"stage": stage, **settings.metadata()})


def check_readout(
    settings: StageSettings, frames: Mapping[str, Mapping[str, pl.DataFrame]]
) -> None:
    """What the model cannot serve in this readout (no chat template, a cue it cannot
    render, a letter that is not one token) stops the stage before its engine starts."""
    from critical_windows.engine.registry import load_tokenizer

    questions = [f["questions"] for f in frames.values() if "questions" in f]
    if not questions or settings.backend == "openai":  # a server's tokenizer: its own check
        return
    q = pl.concat(questions)
    prompter = readout.Prompter(
        load_tokenizer(settings.model_path, settings.revision),
        settings.model_path,
        readout.ReadoutSettings(settings.elicitation, settings.answer_readout, settings.reasoning),
    )
    most = int(q["choices"].list.len().max() or 0) if q.height else 0
    prompter.check(sorted(set(q["answer_type"].to_list())), most)


def settings_from_params(params: Mapping[str, Any], code: str) -> StageSettings:
    """StageSettings from the `settings` param of a model-stage rule."""
    engine = dict(params["engine"])
    return StageSettings(
        **{k: v for k, v in params.items() if k != "engine"},
        engine=EngineSettings(**engine),
        code=code,
    )


SHARD_TABLES = {"base": tables.BASE, "resampled": tables.RESAMPLED, "elicited": tables.ELICITED}


SORT_KEYS = {
    "base": ["question_id"],
    "resampled": ["question_id", "level", "sample"],
    "elicited": ["question_id", "kind", "level", "sample"],
}


def gather_shards(table: str, paths: Sequence[str], out: str) -> None:
    """Concatenate the shards of one dataset's table, refusing duplicated rows."""
    schema = SHARD_TABLES[table]
    frames = [tables.read_table(p, schema) for p in paths]
    df = pl.concat(frames).sort(SORT_KEYS[table], nulls_last=False)
    dupes = df.select(SORT_KEYS[table]).is_duplicated()
    if dupes.any():
        raise ValueError(f"{out}: {int(dupes.sum())} duplicated rows across shards {paths}")
    meta = tables.read_metadata(paths[0])
    meta["shards"] = len(paths)
    tables.write_table(df, out, schema, meta)
