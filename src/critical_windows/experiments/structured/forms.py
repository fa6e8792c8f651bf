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
allowed). How many conform is reported; small models often copy the parentheses, which is
why `structured_exact` samples under a constraint to the form and computes the exact
curves by teacher forcing. `curve_rows` serves both: it takes a weight per string, a count
of samples or an exact probability.
"""

from __future__ import annotations

import itertools
import logging
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from critical_windows.analysis.statistics import wilson
from critical_windows.cot import prompts
from critical_windows.cot.generation import derive_seed
from critical_windows.engine.journal import Journal, request_key
from critical_windows.engine.types import Backend, Completion, Sampling
from critical_windows.io import tables

log = logging.getLogger(__name__)

_OPTIONS = re.compile(r"\(([^()/]+(?:/[^()/]+)+)\)")
_EPS = 1e-12


@dataclass(frozen=True)
class Blank:
    """One numbered sentence with a blank of two or more options: `before` (A/B) `after`."""

    number: int
    before: str
    options: tuple[str, ...]
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
            f"{b.number}. {b.before}({'/'.join(b.options)}){b.after}" for b in self.blanks
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

    def choice_lists(self) -> list[tuple[int, ...]]:
        """Every combination of one option index per blank, in order (the first blank
        varies slowest)."""
        return list(itertools.product(*(range(len(b.options)) for b in self.blanks)))

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
                f"'(option/option[/...])' of two or more options, found {len(found)}"
            )
        m = found[0]
        options = tuple(m.group(1).split("/"))
        firsts = [o[0] for o in options]
        if len(set(firsts)) < len(firsts):
            raise ValueError(
                f"structured.blanks[{number - 1}] {sentence!r}: the options "
                f"{', '.join(map(repr, options))}: two of them start with the same character, "
                "so the theory's bounds (at the chosen word's first character) do not apply; "
                "pick options that differ at once"
            )
        parsed.append(Blank(number, sentence[: m.start()], options, sentence[m.end() :]))
    if not parsed:
        raise ValueError("structured.blanks is empty")
    start = prefill.find("1. ")
    if start < 0:
        raise ValueError(f"structured.prefill {prefill!r} must contain the first line's '1. '")
    form = Form(prompt, tuple(parsed), prefill, prefill[:start])
    rendered = Counter(form.answer(c)[0] for c in form.choice_lists())
    if len(rendered) != len(form.choice_lists()):
        twice = next(t for t, n in rendered.items() if n > 1)
        raise ValueError(f"structured.blanks: two choices render the same answer {twice!r}")
    common = form.head + f"1. {parsed[0].before}"
    if not common.startswith(prefill):
        raise ValueError(
            f"structured.prefill {prefill!r} must be the start of the answer up to the first "
            f"option, {common!r}"
        )
    return form


# --- sampling --------------------------------------------------------------------------


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
    """`samples` completions of the form, journaled request by request
    (tables.STRUCTURED_SAMPLES)."""
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
    return sample_table(form, [c for key, _ in requests for c in done[key]])


def sample_table(form: Form, completions: Sequence[Completion]) -> pl.DataFrame:
    """The STRUCTURED_SAMPLES table of `completions`: each answer's text and the choices it makes,
    when it is in the form."""
    rows = []
    for i, c in enumerate(completions):
        choices = form.choices_of(form.prefill + c.text)
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
    return tables.frame(rows, tables.STRUCTURED_SAMPLES)


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
    from critical_windows.experiments.structured import constrained

    backend = constrained.load_engine(model_path, revision, backend_name, engine, form)
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


def grid_points(step: float) -> int:
    """Number of intervals of a grid of `step` on [0, 1]; 1 / step must be a whole number."""
    k = round(1 / step)
    if k < 1 or abs(k * step - 1) > 1e-9:
        raise ValueError(f"structured.grid_step {step}: 1 / grid_step must be a whole number")
    return k


def curve_rows(
    weights: Mapping[str, float], form: Form, k: int, ranks: Mapping[str, int] | None = None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """P(s | s[:p]) on a grid of `k` steps and the bounds per blank, for every string of
    `weights` (a count or a probability per conforming string; zero weights are skipped).

    P(s | s[:p]) = w(s) / (total weight of the strings starting with s[:p]). Each rise of
    the curve is assigned to the blank whose bounds are nearest. `ranks` numbers the strings
    (default: by weight, then text). Rows use the generic names ``weight`` and
    ``prefix_weight``; `estimate` and `structured_exact` rename them."""
    items = [(t, w) for t, w in weights.items() if w > 0]
    if ranks is None:
        ranks = {t: r for r, (t, _) in enumerate(sorted(items, key=lambda x: (-x[1], x[0])), 1)}
    curves: list[dict[str, Any]] = []
    blanks: list[dict[str, Any]] = []
    for s, weight in sorted(items, key=lambda x: ranks[x[0]]):
        rank, n = ranks[s], len(s)
        ps = []
        for i in range(k + 1):
            p = i * n // k
            prefix_weight = sum(w for t, w in items if t.startswith(s[:p]))
            ps.append(weight / prefix_weight)
            curves.append(
                {
                    "rank": rank,
                    "string": s,
                    "weight": weight,
                    "grid": i / k,
                    "prefix_chars": p,
                    "prefix_weight": prefix_weight,
                    "p_same": weight / prefix_weight,
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
            blanks.append(
                {
                    "rank": rank,
                    "string": s,
                    "weight": weight,
                    "blank": b.number,
                    "option": b.options[choice_idx[j]],
                    "position": pos,
                    "length": n,
                    "t_lower": lo / k,
                    "t_upper": hi / k,
                    "alternatives": sum(
                        w for t, w in items if t.startswith(s[:pos]) and t[pos] != s[pos]
                    ),
                    "jump_lo": (min(i for i, _ in steps) - 1) / k if steps else None,
                    "jump_hi": max(i for i, _ in steps) / k if steps else None,
                    "rise": sum(r for _, r in steps) if steps else None,
                    "inside": all(lo <= i - 1 and i <= hi for i, _ in steps) if steps else None,
                }
            )
    return curves, blanks


def estimate(
    samples: pl.DataFrame,
    form: Form,
    grid_step: float,
    ranks: Mapping[str, int] | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """(tables.STRUCTURED_CURVES, tables.STRUCTURED_BLANKS, conformance) of the conforming
    samples; `ranks` as in `curve_rows`."""
    k = grid_points(grid_step)
    conforming = samples.filter("conforming")
    counts = Counter(conforming["string"].to_list())
    curves, blanks = curve_rows(counts, form, k, ranks)
    for row in curves:
        row["count"] = row.pop("weight")
        row["n_prefix"] = row.pop("prefix_weight")
        row["wilson_lo"], row["wilson_hi"] = wilson(row["count"], row["n_prefix"])
    for row in blanks:
        row["count"] = row.pop("weight")
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
    curves_df = tables.frame(curves, tables.STRUCTURED_CURVES)
    blanks_df = tables.frame(blanks, tables.STRUCTURED_BLANKS)
    return curves_df, blanks_df, conformance  # type: ignore[return-value]
