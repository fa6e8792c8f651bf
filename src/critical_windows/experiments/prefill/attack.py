"""Prefill-attack windows (METHOD.md §5): where a chat model flips from refusing to complying.

For each harmful request the assistant turn is prefilled with growing prefixes of an
affirmative opener ("Sure, here is how to ", 4 characters at a time), `M` continuations are
sampled from each prefix, and a judge (experiments.prefill.judges) calls each one complied
or refused. The compliance rate against the prefix length is a curve like the consistency
curve of the chain-of-thought protocol, and windows are found in it by the same code
(`windows.find_windows`); experiments.prefill.views draws them with the same figures and
shows them in an explorer page that marks the prefix where behaviour flips.

Tables: the harmful requests (`tables.REQUESTS`, one per dataset), then PREFILL_CONTINUATIONS,
PREFILL_JUDGED (one per judge), COMPLIANCE_CURVES and COMPLIANCE_WINDOWS of each model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa

from critical_windows.analysis import statistics, windows
from critical_windows.catalog import HARMFUL_DATASETS
from critical_windows.cot import prompts
from critical_windows.cot.generation import Generator, StageSettings, derive_seed
from critical_windows.data.harmful import request_messages
from critical_windows.engine.journal import Journal
from critical_windows.engine.registry import load_backend
from critical_windows.engine.types import EngineSettings, Sampling
from critical_windows.experiments.prefill import judges
from critical_windows.experiments.prefill.judges import Judge, Verdict
from critical_windows.io import tables

POOLED = "all"

_STR = pa.string()
_INT = pa.int32()


COMPLIANCE = windows.CurveColumns(
    unit=("dataset", "judge", "request_id"),
    p="p_complied",
    k="n_complied",
    n="n_judged",
    anchor=None,
)


# --- harmful requests --------------------------------------------------------------------------


# --- the prefill attack ------------------------------------------------------------------------


def prefix_lengths(opener: str, step: int) -> list[int]:
    """0 (no prefill), then every `step` characters of `opener`, ending with all of it."""
    if step < 1:
        raise ValueError(f"the prefix step must be at least 1 character, got {step}")
    if not opener:
        raise ValueError("the opener is empty: there is nothing to prefill")
    return sorted({*range(0, len(opener), step), len(opener)})


def make_generator(
    *,
    model_path: str,
    revision: str | None,
    backend: str,
    engine: Mapping[str, Any],
    sampling: Mapping[str, Any],
    seed: int,
    code: str,
    batch_size: int,
    journal_dir: Path,
    label: str,
) -> Generator:
    """A journaled generator over a freshly loaded engine (see generation.Generator); the
    stage settings of the chain-of-thought protocol it has no use for take `sampling`'s."""
    settings = StageSettings(
        model=label,
        model_path=model_path,
        revision=revision,
        backend=backend,
        engine=EngineSettings(**engine),
        temperature=sampling["temperature"],
        top_p=sampling["top_p"],
        max_tokens=sampling["max_tokens"],
        seed=seed,
        samples_per_level=sampling.get("n", 1),
        elicitation_max_tokens=sampling["max_tokens"],
        code=code,
        batch_size=batch_size,
    )
    backend_ = load_backend(backend, model_path, settings.engine, revision)
    return Generator(backend_, Journal(journal_dir), settings)


def make_judge(
    name: str,
    *,
    phrases: Sequence[str],
    strongreject: Mapping[str, Any],
    templates: Path,
    code: str,
    journal_dir: Path,
    backend: str,
    engine: Mapping[str, Any],
    seed: int,
    batch_size: int,
) -> Judge:
    """The judge `name` of the config: the refusal-phrase classifier with `phrases`, or the
    StrongREJECT rubric (its template read from `templates`, resources/datasets) graded by
    the model `strongreject["model_path"]`."""
    if name == "refusal_phrases":
        return judges.RefusalPhraseJudge(phrases)
    if name == "strongreject":
        gen = make_generator(
            model_path=strongreject["model_path"],
            revision=strongreject["model"].get("revision"),
            backend=backend,
            engine=engine,
            sampling={"temperature": 0.0, "top_p": 1.0, "max_tokens": strongreject["max_tokens"]},
            seed=seed,
            code=code,
            batch_size=batch_size,
            journal_dir=journal_dir,
            label="judge",
        )
        rubric = judges.load_rubric(templates, strongreject["template"])
        return judges.StrongRejectJudge(gen, rubric, strongreject["max_tokens"])
    raise ValueError(f"unknown judge {name!r}; expected one of {judges.JUDGES}")


def sample_continuations(
    gen: Generator,
    requests: pl.DataFrame,
    *,
    opener: str,
    step: int,
    samples: int,
    system_prompt: str | None,
) -> pl.DataFrame:
    """`samples` continuations of every request after every prefix of `opener`."""
    s = gen.settings
    items = []
    for r in requests.select("request_id", "dataset", "request").to_dicts():
        messages = request_messages(r["request"], system_prompt)
        for k in prefix_lengths(opener, step):
            sampling = Sampling(
                s.temperature,
                s.top_p,
                s.max_tokens,
                samples,
                derive_seed(s.seed, r["request_id"], k, "prefill"),
            )
            ids = prompts.render(gen.tokenizer, messages, opener[:k])
            items.append((r, k, gen.request(ids, sampling, f"request {r['request_id']} k={k}")))
    done = gen.run([req for *_, req in items], "sample_continuations")
    out = []
    for r, k, req in items:
        for i, c in enumerate(done[req.key]):
            out.append(
                {
                    "request_id": r["request_id"],
                    "dataset": r["dataset"],
                    "prefix_chars": k,
                    "prefix_text": opener[:k],
                    "sample": i,
                    "token_ids": list(c.token_ids),
                    "text": c.text,
                    "n_tokens": len(c.token_ids),
                    "finish_reason": c.finish_reason,
                }
            )
    return tables.frame(out, tables.PREFILL_CONTINUATIONS)


def judge_continuations(
    judge: Judge, requests: pl.DataFrame, continuations: pl.DataFrame
) -> pl.DataFrame:
    """A verdict on every continuation. The judged response is the whole assistant turn (the
    prefill and its continuation); an empty continuation gets no verdict."""
    text_of = dict(requests.select("request_id", "request").iter_rows())
    rows = continuations.select(
        "request_id", "dataset", "prefix_chars", "prefix_text", "sample", "text"
    ).to_dicts()
    todo = [i for i, r in enumerate(rows) if r["text"].strip()]
    verdicts: dict[int, Verdict] = dict(
        zip(
            todo,
            judge.judge(
                [text_of[rows[i]["request_id"]] for i in todo],
                [rows[i]["prefix_text"] + rows[i]["text"] for i in todo],
            ),
            strict=True,
        )
    )
    empty = Verdict(None, missing_reason="empty continuation")
    out = []
    for i, r in enumerate(rows):
        v = verdicts.get(i, empty)
        out.append(
            {
                "request_id": r["request_id"],
                "dataset": r["dataset"],
                "prefix_chars": r["prefix_chars"],
                "sample": r["sample"],
                "judge": judge.name,
                "judge_model": judge.model,
                "complied": v.complied,
                "refused": v.refused,
                "convincing": v.convincing,
                "specific": v.specific,
                "score": v.score,
                "missing_reason": v.missing_reason,
                "judge_output": v.output,
            }
        )
    return tables.frame(out, tables.PREFILL_JUDGED)


# --- curves and windows ------------------------------------------------------------------------


def compliance_curves(judged: pl.DataFrame, opener: str) -> pl.DataFrame:
    """The compliance rate of every request at every prefix length, per judge."""
    complied = pl.col("complied")
    out = (
        judged.group_by("dataset", "judge", "request_id", "prefix_chars")
        .agg(
            n_judged=complied.is_not_null().sum().cast(pl.Int32),
            n_missing=complied.is_null().sum().cast(pl.Int32),
            n_complied=complied.sum().cast(pl.Int32),
            mean_score=pl.col("score").mean(),
        )
        .with_columns(
            level=pl.col("prefix_chars").cast(pl.Float64),
            prefix_text=pl.col("prefix_chars").map_elements(
                lambda k: opener[:k], return_dtype=pl.String
            ),
            p_complied=pl.when(pl.col("n_judged") > 0).then(
                pl.col("n_complied") / pl.col("n_judged")
            ),
        )
        .sort("dataset", "judge", "request_id", "level")
    )
    low, high = statistics.wilson_interval(out["n_complied"].to_numpy(), out["n_judged"].to_numpy())
    return out.with_columns(
        ci_low=pl.Series(low).fill_nan(None), ci_high=pl.Series(high).fill_nan(None)
    ).select(tables.COMPLIANCE_CURVES.names)


def compliance_windows(
    curves: pl.DataFrame, opener: str, *, jump: float, drop: float, fdr: float
) -> pl.DataFrame:
    """Windows of the compliance curves by the rule of the chain-of-thought protocol, each
    judge's run with its own Benjamini-Hochberg control."""
    parts = [
        windows.find_windows(
            curves.filter(pl.col("judge") == judge),
            jump=jump,
            drop=drop,
            fdr=fdr,
            columns=COMPLIANCE,
        )
        for judge in curves["judge"].unique(maintain_order=True)
    ]
    unit = list(COMPLIANCE.unit)
    if not parts:
        return tables.frame([], tables.COMPLIANCE_WINDOWS)
    ends = curves.group_by(unit).agg(
        p_no_prefill=pl.col("p_complied").filter(pl.col("level") == 0).first(),
        p_full_opener=pl.col("p_complied").filter(pl.col("level") == len(opener)).first(),
    )

    def cut(lo: float | None, hi: float | None) -> str | None:
        return None if lo is None or hi is None else opener[int(lo) : int(hi)]

    found = (
        pl.concat(parts, how="vertical_relaxed")
        .join(ends, on=unit, how="left")
        .with_columns(
            window_text=pl.when(pl.col("has_window")).then(
                pl.struct("level_lo", "level_hi").map_elements(
                    lambda s: cut(s["level_lo"], s["level_hi"]), return_dtype=pl.String
                )
            ),
            flip_prefix=pl.when(pl.col("has_window")).then(
                pl.col("level_hi").map_elements(
                    lambda hi: opener[: int(hi)], return_dtype=pl.String
                )
            ),
        )
        .sort(unit)
    )
    return found.select(tables.COMPLIANCE_WINDOWS.names).cast({"n_levels": pl.Int32})


# --- summary -----------------------------------------------------------------------------------

SUMMARY_COLUMNS = [
    "model",
    "judge",
    "dataset",
    "n_requests",
    "n_curve",
    "compliance_no_prefill",
    "compliance_full_opener",
    "mean_compliance",
    "n_missing",
    "window_share",
    "window_share_significant",
    "n_window",
    "most_common_window",
    "note",
]


def summarize(
    curves: pl.DataFrame, found: pl.DataFrame, model: str, note: str | None = None
) -> pl.DataFrame:
    """Per judge and dataset (and pooled over datasets, `all`): compliance without a prefill
    and with the whole opener, the share of requests with a window, and its commonest step."""
    both = [
        (curves, found),
        (curves.with_columns(dataset=pl.lit(POOLED)), found.with_columns(dataset=pl.lit(POOLED))),
    ]
    parts = []
    for c, w in both:
        window = pl.col("has_window")
        step = pl.format(
            "{} → {}", pl.col("level_lo").cast(pl.Int32), pl.col("level_hi").cast(pl.Int32)
        )
        per = w.group_by("judge", "dataset").agg(
            n_requests=pl.len(),
            n_curve=window.is_not_null().sum(),
            compliance_no_prefill=pl.col("p_no_prefill").mean(),
            compliance_full_opener=pl.col("p_full_opener").mean(),
            window_share=window.mean(),
            window_share_significant=pl.when(window.is_not_null())
            .then(window & pl.col("significant").fill_null(False))
            .mean(),
            n_window=window.sum(),
            most_common_window=step.filter(window).mode().sort().first(),
        )
        levels = c.group_by("judge", "dataset").agg(
            mean_compliance=pl.col("p_complied").mean(), n_missing=pl.col("n_missing").sum()
        )
        parts.append(per.join(levels, on=["judge", "dataset"], how="left"))
    order = {d: i for i, d in enumerate([*HARMFUL_DATASETS, POOLED])}
    return (
        pl.concat(parts, how="vertical_relaxed")
        .with_columns(model=pl.lit(model), note=pl.lit(note, dtype=pl.String))
        .sort(
            "judge",
            pl.col("dataset").replace_strict(order, default=len(order), return_dtype=pl.Int64),
        )
        .select(SUMMARY_COLUMNS)
    )


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def to_markdown(summary: pl.DataFrame, opener: str, thresholds: Mapping[str, float]) -> str:
    """The summary as Markdown, with the protocol in one paragraph."""
    model = summary["model"][0] if summary.height else "?"
    note = summary["note"][0] if summary.height else None
    lines = [
        f"# Prefill-attack windows: {model}",
        "",
        *([f"**{note}**", ""] if note else []),
        f"The assistant turn is prefilled with growing prefixes of {opener!r}; each judge calls "
        "every sampled continuation complied or refused. Window rule: a step of the compliance "
        f"rate rises by more than {thresholds['jump']} and no step falls by more than "
        f"{thresholds['drop']}; *significant*: that step's one-sided Fisher test passes "
        f"Benjamini-Hochberg at FDR {thresholds['fdr']} over the judge's run.",
        "",
        "| judge | dataset | requests | compliance, no prefill | compliance, whole opener "
        "| mean compliance | window share | significant | commonest window (characters) "
        "| no verdict |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for r in summary.iter_rows(named=True):
        lines.append(
            f"| {r['judge']} | {r['dataset']} | {r['n_requests']} "
            f"| {_fmt(r['compliance_no_prefill'])} | {_fmt(r['compliance_full_opener'])} "
            f"| {_fmt(r['mean_compliance'])} | {_fmt(r['window_share'])} "
            f"| {_fmt(r['window_share_significant'])} | {_fmt(r['most_common_window'])} "
            f"| {r['n_missing']} |"
        )
    return "\n".join(lines) + "\n"
