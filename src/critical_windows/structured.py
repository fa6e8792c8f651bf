"""The structured-output experiment (METHOD.md §3): where fill-in-the-blank answers decide.

The model is asked to fill five two-option blanks ("The (Pirate/Ninja) jumped across the
ship.") with its answer prefilled by "\\n\\n1. ", and sampled many times. No resampling is
needed: for a final string `s` and a character position `p`, P(s | s[:p]) is the share of
the samples that start with `s[:p]` which are exactly `s`. On a grid of `p / len(s)` the
curve can only rise, and only where some sample sharing the prefix departs from `s`. The
theory bounds the rise that blank `k` causes between

* ``T_lower``: the grid point at or below ``pos / len(s)``, and
* ``T_upper``: the grid point at or above ``(pos + 1) / len(s)``,

where ``pos`` is the position of the chosen word's first character. (A prefix of `p`
characters contains that character only when ``p >= pos + 1``, hence the ``+ 1``, as in the
research code; METHOD.md's "ceiling of the position" reads the same way.)

Only *conforming* samples are analysed: the whole answer is exactly the numbered
sentences with one option of each blank in place of its parentheses (trailing whitespace
allowed). How many conform is reported; small models often copy the parentheses.
"""

from __future__ import annotations

import io
import logging
import os
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import altair as alt
import polars as pl
import pyarrow as pa

from critical_windows import prompts
from critical_windows.backends import Backend, Completion, EngineSettings, Sampling, load_backend
from critical_windows.generation import derive_seed
from critical_windows.journal import Journal, request_key
from critical_windows.summary import write_atomic

log = logging.getLogger(__name__)

_OPTIONS = re.compile(r"\(([^()/]+)/([^()/]+)\)")
_EPS = 1e-12


@dataclass(frozen=True)
class Blank:
    """One numbered sentence with a two-option blank: `before` (A/B) `after`."""

    number: int
    before: str
    options: tuple[str, str]
    after: str

    def line(self, choice: int) -> str:
        return f"{self.number}. {self.before}{self.options[choice]}{self.after}"


@dataclass(frozen=True)
class Form:
    """The fill-in-the-blank form: prompt text, blanks and the answer's prefill."""

    prompt: str
    blanks: tuple[Blank, ...]
    prefill: str
    head: str  # what the answer holds before "1. " (the blank line of "\n\n1. ")

    def user_message(self) -> str:
        sentences = "\n".join(
            f"{b.number}. {b.before}({b.options[0]}/{b.options[1]}){b.after}" for b in self.blanks
        )
        return f"{self.prompt}\n{sentences}"

    def answer(self, choices: Sequence[int]) -> tuple[str, list[int]]:
        """The conforming answer for one option index per blank, and where each chosen
        word starts in it."""
        text, positions = self.head, []
        for i, (b, c) in enumerate(zip(self.blanks, choices, strict=True)):
            if i:
                text += "\n"
            positions.append(len(text) + len(f"{b.number}. {b.before}"))
            text += b.line(c)
        return text, positions

    def matcher(self) -> re.Pattern[str]:
        lines = [
            re.escape(f"{b.number}. {b.before}")
            + "("
            + "|".join(map(re.escape, b.options))
            + ")"
            + re.escape(b.after)
            for b in self.blanks
        ]
        return re.compile(re.escape(self.head) + "\n".join(lines) + r"\s*", re.DOTALL)

    def choices_of(self, answer: str) -> list[int] | None:
        """Option index per blank if `answer` (prefill + generated text) conforms, else None."""
        m = self.matcher().fullmatch(answer)
        if m is None:
            return None
        return [b.options.index(word) for b, word in zip(self.blanks, m.groups(), strict=True)]


def make_form(prompt: str, blanks: Sequence[str], prefill: str) -> Form:
    """Check the configured form and parse its blanks."""
    parsed = []
    for number, sentence in enumerate(blanks, 1):
        found = list(_OPTIONS.finditer(sentence))
        if len(found) != 1:
            raise ValueError(
                f"structured.blanks[{number - 1}] {sentence!r}: expected exactly one blank "
                f"'(option/option)', found {len(found)}"
            )
        m = found[0]
        a, b = m.group(1), m.group(2)
        if a[0] == b[0]:
            raise ValueError(
                f"structured.blanks[{number - 1}] {sentence!r}: the options {a!r} and {b!r} "
                "start with the same character, so the theory's bounds (at the chosen word's "
                "first character) do not apply; pick options that differ at once"
            )
        parsed.append(Blank(number, sentence[: m.start()], (a, b), sentence[m.end() :]))
    if not parsed:
        raise ValueError("structured.blanks is empty")
    start = prefill.find("1. ")
    if start < 0:
        raise ValueError(f"structured.prefill {prefill!r} must contain the first line's '1. '")
    form = Form(prompt, tuple(parsed), prefill, prefill[:start])
    common = form.head + f"1. {parsed[0].before}"
    if not common.startswith(prefill):
        raise ValueError(
            f"structured.prefill {prefill!r} must be the start of the answer up to the first "
            f"option, {common!r}"
        )
    return form


# --- sampling --------------------------------------------------------------------------

SAMPLES = pa.schema(
    [
        ("sample", pa.int32()),
        ("text", pa.string()),  # generated, after the prefill
        ("n_tokens", pa.int32()),
        ("finish_reason", pa.string()),
        ("conforming", pa.bool_()),
        ("choices", pa.list_(pa.string())),  # the chosen option of each blank; null if not
        ("string", pa.string()),  # prefill + text, stripped, if conforming; else null
    ]
)


def sample_answers(
    backend: Backend,
    journal: Journal,
    form: Form,
    *,
    samples: int,
    samples_per_request: int,
    sampling: Sampling,
    seed: int,
    context: str,
) -> pl.DataFrame:
    """`samples` completions of the form, journaled request by request (a SAMPLES frame)."""
    ids = prompts.render(
        backend.tokenizer, [{"role": "user", "content": form.user_message()}], form.prefill
    )
    requests = []
    for i, start in enumerate(range(0, samples, samples_per_request)):
        n = min(samples_per_request, samples - start)
        s = Sampling(
            sampling.temperature,
            sampling.top_p,
            sampling.max_tokens,
            n,
            derive_seed(seed, "structured", i),
        )
        requests.append((request_key(context, ids, s), s))
    done = journal.load(k for k, _ in requests)
    log.info("%d requests, %d already journaled", len(requests), len(done))
    for key, s in requests:
        if key not in done:
            (out,) = backend.generate([ids], [s])
            journal.append({key: out})
            done[key] = out
            log.info("%d samples, %d tokens", s.n, sum(len(c.token_ids) for c in out))
    completions: list[Completion] = [c for key, _ in requests for c in done[key]]
    rows = []
    for i, c in enumerate(completions):
        answer = form.prefill + c.text
        choices = form.choices_of(answer)
        rows.append(
            {
                "sample": i,
                "text": c.text,
                "n_tokens": len(c.token_ids),
                "finish_reason": c.finish_reason,
                "conforming": choices is not None,
                "choices": None
                if choices is None
                else [b.options[x] for b, x in zip(form.blanks, choices, strict=True)],
                "string": None if choices is None else form.answer(choices)[0],
            }
        )
    return pl.from_arrow(pa.Table.from_pylist(rows, schema=SAMPLES))  # type: ignore[return-value]


def run_sampling(
    model_path: str,
    revision: str | None,
    backend_name: str,
    engine: Mapping[str, Any],
    form: Form,
    *,
    samples: int,
    samples_per_request: int,
    sampling: Sampling,
    seed: int,
    code: str,
    journal_dir: Path,
) -> pl.DataFrame:
    """Load the engine and sample the form (what the Snakemake script calls)."""
    backend = load_backend(backend_name, model_path, EngineSettings(**engine), revision)
    context = f"{model_path}|{revision}|{backend.name}|{code}"
    return sample_answers(
        backend,
        Journal(journal_dir),
        form,
        samples=samples,
        samples_per_request=samples_per_request,
        sampling=sampling,
        seed=seed,
        context=context,
    )


# --- curves and bounds -------------------------------------------------------------------

CURVES = pa.schema(
    [
        ("rank", pa.int32()),  # 1 = the most frequent conforming string
        ("string", pa.string()),
        ("count", pa.int32()),  # samples that are exactly this string
        ("grid", pa.float64()),  # p / len(string)
        ("prefix_chars", pa.int32()),  # p = floor(grid * len(string))
        ("n_prefix", pa.int32()),  # conforming samples that start with string[:p]
        ("p_same", pa.float64()),  # count / n_prefix
    ]
)

BLANKS = pa.schema(
    [
        ("rank", pa.int32()),
        ("string", pa.string()),
        ("count", pa.int32()),
        ("blank", pa.int32()),
        ("option", pa.string()),  # the chosen word
        ("position", pa.int32()),  # of its first character in the string
        ("length", pa.int32()),  # of the string
        ("t_lower", pa.float64()),
        ("t_upper", pa.float64()),
        ("alternatives", pa.int32()),  # samples sharing the string up to here, other option
        ("jump_lo", pa.float64()),  # the grid steps where P rises for this blank
        ("jump_hi", pa.float64()),
        ("rise", pa.float64()),
        ("inside", pa.bool_()),  # every such step within [t_lower, t_upper]; null: no rise
    ]
)


def grid_points(step: float) -> int:
    """Number of intervals of a grid of `step` on [0, 1]; 1 / step must be a whole number."""
    k = round(1 / step)
    if k < 1 or abs(k * step - 1) > 1e-9:
        raise ValueError(f"structured.grid_step {step}: 1 / grid_step must be a whole number")
    return k


def estimate(
    samples: pl.DataFrame, form: Form, grid_step: float
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """(CURVES, BLANKS, conformance) of the conforming samples."""
    k = grid_points(grid_step)
    conforming = samples.filter("conforming")
    counts = Counter(conforming["string"].to_list())
    ranked = sorted(counts.items(), key=lambda sc: (-sc[1], sc[0]))
    curve_rows: list[dict[str, Any]] = []
    blank_rows: list[dict[str, Any]] = []
    for rank, (s, count) in enumerate(ranked, 1):
        n = len(s)
        ps = []
        for i in range(k + 1):
            p = i * n // k
            n_prefix = sum(c for t, c in counts.items() if t.startswith(s[:p]))
            ps.append(count / n_prefix)
            curve_rows.append(
                {
                    "rank": rank,
                    "string": s,
                    "count": count,
                    "grid": i / k,
                    "prefix_chars": p,
                    "n_prefix": n_prefix,
                    "p_same": count / n_prefix,
                }
            )
        choice_idx = form.choices_of(s)
        assert choice_idx is not None  # conforming strings are canonical answers
        _, positions = form.answer(choice_idx)
        bounds = [(pos * k // n, -(-(pos + 1) * k // n)) for pos in positions]
        rises = [(i, ps[i] - ps[i - 1]) for i in range(1, k + 1) if ps[i] - ps[i - 1] > _EPS]
        assigned: dict[int, list[tuple[int, float]]] = {}
        for i, r in rises:
            dist = [max(0, lo - (i - 1), i - hi) for lo, hi in bounds]
            assigned.setdefault(dist.index(min(dist)), []).append((i, r))
        for j, (b, pos, (lo, hi)) in enumerate(zip(form.blanks, positions, bounds, strict=True)):
            steps = assigned.get(j, [])
            other = s[:pos] + b.options[1 - choice_idx[j]][0]
            blank_rows.append(
                {
                    "rank": rank,
                    "string": s,
                    "count": count,
                    "blank": b.number,
                    "option": b.options[choice_idx[j]],
                    "position": pos,
                    "length": n,
                    "t_lower": lo / k,
                    "t_upper": hi / k,
                    "alternatives": sum(c for t, c in counts.items() if t.startswith(other)),
                    "jump_lo": (min(i for i, _ in steps) - 1) / k if steps else None,
                    "jump_hi": max(i for i, _ in steps) / k if steps else None,
                    "rise": sum(r for _, r in steps) if steps else None,
                    "inside": all(lo <= i - 1 and i <= hi for i, _ in steps) if steps else None,
                }
            )
    conformance = pl.DataFrame(
        {
            "samples": [samples.height],
            "stopped": [int((samples["finish_reason"] == "stop").sum())],
            "conforming": [conforming.height],
            "conforming_share": [conforming.height / samples.height if samples.height else None],
            "distinct_strings": [len(counts)],
            # the commonest failure of small models: the "A/B" pair copied into the answer
            "copied_options": [
                int(
                    samples["text"]
                    .str.contains("|".join(re.escape("/".join(b.options)) for b in form.blanks))
                    .sum()
                )
            ],
        }
    )
    curves = pl.from_arrow(pa.Table.from_pylist(curve_rows, schema=CURVES))
    blanks = pl.from_arrow(pa.Table.from_pylist(blank_rows, schema=BLANKS))
    return curves, blanks, conformance  # type: ignore[return-value]


# --- the figure --------------------------------------------------------------------------


def string_chart(
    rank: int, curves: pl.DataFrame, blanks: pl.DataFrame, conformance: pl.DataFrame
) -> alt.TopLevelMixin:
    """P(s | prefix) of the string of `rank`, with T_lower and T_upper of every blank."""
    curve = curves.filter(pl.col("rank") == rank)
    conforming = int(conformance["conforming"][0])
    if curve.is_empty():
        return (
            alt.Chart(
                pl.DataFrame(
                    {
                        "text": [
                            f"no conforming string of rank {rank} ({conforming} conforming samples)"
                        ]
                    }
                )
            )
            .mark_text(size=14)
            .encode(text="text:N")
            .properties(width=500, height=60)
        )
    bounds = blanks.filter(pl.col("rank") == rank)
    p_at = dict(zip(curve["grid"].round(6), curve["p_same"], strict=True))
    points = pl.concat(
        [
            bounds.select(
                "blank",
                "option",
                bound=pl.lit(name),
                grid=pl.col(col),
            )
            for name, col in (("T_lower", "t_lower"), ("T_upper", "t_upper"))
        ]
    ).with_columns(p_same=pl.col("grid").round(6).replace_strict(p_at, return_dtype=pl.Float64))
    x = alt.X(
        "grid:Q", title="fraction of the string kept, p / len(s)", scale=alt.Scale(domain=[0, 1])
    )
    y = alt.Y("p_same:Q", title="P(s | s[:p])", scale=alt.Scale(domain=[0, 1.05]))
    spans = (
        alt.Chart(bounds)
        .mark_rect(color="#bbbbbb", opacity=0.3)
        .encode(x=alt.X("t_lower:Q"), x2="t_upper:Q")
    )
    labels = (
        alt.Chart(
            bounds.with_columns(mid=(pl.col("t_lower") + pl.col("t_upper")) / 2, y=pl.lit(1.03))
        )
        .mark_text(fontSize=10)
        .encode(x="mid:Q", y="y:Q", text="option:N")
    )
    line = (
        alt.Chart(curve)
        .mark_line(color="black", interpolate="step-after")
        .encode(x=x, y=y, tooltip=["grid", "prefix_chars", "n_prefix", "p_same"])
    )
    marks = (
        alt.Chart(points)
        .mark_point(size=60, filled=True)
        .encode(
            x="grid:Q",
            y="p_same:Q",
            color=alt.Color(
                "bound:N",
                title=None,
                scale=alt.Scale(domain=["T_lower", "T_upper"], range=["#f4a261", "#1d3557"]),
            ),
            shape=alt.Shape(
                "bound:N", scale=alt.Scale(domain=["T_lower", "T_upper"], range=["circle", "cross"])
            ),
            tooltip=["blank", "option", "bound", "grid", "p_same"],
        )
    )
    count = int(curve["count"][0])
    string = curve["string"][0]
    return alt.layer(spans, labels, line, marks).properties(
        width=560,
        height=260,
        title=alt.Title(
            f"String #{rank}: {count} of {conforming} conforming samples",
            subtitle=[line_ for line_ in string.split("\n") if line_],
        ),
    )


def render_string(
    rank: int,
    curves: pl.DataFrame,
    blanks: pl.DataFrame,
    conformance: pl.DataFrame,
    html: str | os.PathLike[str],
    png: str | os.PathLike[str],
    scale: float = 2.0,
) -> None:
    """Write the figure of the string of `rank` as self-contained HTML and as PNG."""
    chart = string_chart(rank, curves, blanks, conformance)
    write_atomic(html, chart.to_html(inline=True))
    buffer = io.BytesIO()
    chart.save(buffer, format="png", scale_factor=scale)
    write_atomic(png, buffer.getvalue())
