"""Units of a response text (issue #17): sentences and reasoning steps, and the token cuts
that fall at their starts.

`segment(text, unit)` splits a response into contiguous units that cover it exactly: unit
`i` is `text[start:end]`, its trailing whitespace included, so that the units concatenate
back to the text. Sentences come from pysbd (rule-based sentence boundary disambiguation:
abbreviations such as "Dr." and "e.g.", decimals such as "3.14"), run on a masked copy of the
text in which what pysbd must not split, or split at, is hidden behind letters of the same
length: inline and display LaTeX (`$...$`, `$$...$$`, `\\(...\\)`, `\\[...\\]`, and bare
commands with their braces such as `\\frac{1}{2}`), inline code and fenced code blocks.
Hard boundaries come before pysbd: `<think>` and `</think>` tags, blank lines, and lines
that open an enumeration ("1. ", "2) ", "Step 2:", "**Step 2:**", "- ", "* ", "(a) ") or a
Markdown heading. A `step` is the text between hard boundaries (a paragraph, a numbered
step, a blank-line block); a `sentence` is a pysbd sentence inside a step, or a line of it.
An enumeration marker is never a unit of its own: "1. " belongs to the sentence it opens.

`unit_cuts(text, token_ids, tokenizer, unit)` places a cut at the start of every unit but
the first: the first token whose text reaches the unit's first non-space character. The
prefix of the cut is the tokens before it; it ends where the previous unit's text ends
(up to whitespace that a token shares with the next word).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

UNITS = ("sentence", "step")

# Hidden from pysbd: replaced by letters of the same length so that offsets do not move.
_MASKED = re.compile(
    r"```.*?(?:```|\Z)"  # fenced code block (an unclosed one runs to the end)
    r"|`[^`\n]+`"  # inline code
    r"|\$\$.+?\$\$"  # display math
    r"|\\\[.+?\\\]"
    r"|\\\(.+?\\\)"
    r"|(?<![\\$])\$(?!\s)[^$\n]+?(?<!\s)\$"  # inline math: $x$, not "$5 and $6"
    r"|\\[A-Za-z]+(?:\s*\{[^{}\n]*(?:\{[^{}\n]*\}[^{}\n]*)*\})*",  # bare command + braces
    re.DOTALL,
)
_THINK = re.compile(r"</?think>")
# A line that opens a step: an enumeration or a "Step k" header.
_OPENER = re.compile(
    r"(?:\d{1,3}[.)](?=\s)|\(?[a-zA-Z][.)](?=\s)|[-*+\u2022](?=\s)|#{1,6}\s"
    r"|(?:\*\*|__)?(?i:step)\s*\d+\s*[:.)-]?)"
)
_MARKER_ONLY = re.compile(r"^\s*(?:\(?\d{1,3}[.)]|\(?[a-zA-Z][.)]|[-*+\u2022])\s*$")


@dataclass(frozen=True)
class Unit:
    """One unit: `text[start:end]` of the segmented text, trailing whitespace included."""

    index: int
    start: int
    end: int
    text: str

    @property
    def content_start(self) -> int:
        """Offset of the first non-space character (where a cut before the unit falls)."""
        return self.start + (len(self.text) - len(self.text.lstrip()))

    @property
    def content_end(self) -> int:
        """Offset just after the last non-space character."""
        return self.start + len(self.text.rstrip())


@lru_cache(maxsize=1)
def _segmenter() -> Any:
    import pysbd

    return pysbd.Segmenter(language="en", clean=False, char_span=True)


def _mask(text: str) -> str:
    """`text` with math and code replaced by letters of the same length (offsets kept).

    Newlines inside a masked span are hidden too, so that a code block or a display
    equation over several lines stays one piece.
    """
    return _MASKED.sub(lambda m: re.sub(r"\S|\n", "x", m.group(0)), text)


def _mask_numbers(masked: str) -> str:
    """Digits as letters, for pysbd only: it takes a number followed by a full stop
    inside a line ("add 2. Then") for a list item and splits before it."""
    return re.sub(r"\d", "k", masked)


def _hard_breaks(text: str, masked: str) -> list[int]:
    """Offsets where a step starts: think tags, blank lines, enumeration lines."""
    breaks = {0, len(text)}
    for m in _THINK.finditer(text):
        # "<think>" opens the next unit; "</think>" closes the one before.
        breaks.add(m.start() if m.group(0) == "<think>" else m.end())
    # Line starts in the masked copy, so a newline inside a code block or display math
    # does not start a step.
    for m in re.finditer(r"\n[ \t]*\n\s*", masked):
        breaks.add(m.end())
    for m in re.finditer(r"(?m)^[ \t]*", masked):
        line = m.end()
        if line > 0 and _OPENER.match(masked, line):
            breaks.add(m.start())
    return sorted(b for b in breaks if 0 <= b <= len(text))


def _spans_to_units(text: str, cuts: Sequence[int]) -> list[Unit]:
    """Units between sorted cut offsets. A piece with nothing to read joins a neighbour:
    whitespace and a lone "</think>" the unit before, a lone "<think>" the unit after."""
    bounds = sorted(set(cuts) | {0, len(text)})
    merged: list[tuple[int, int]] = []
    carry: int | None = None  # start of a lone "<think>" waiting for the next piece
    for a, b in zip(bounds, bounds[1:], strict=False):
        piece = text[a:b].strip()
        if carry is not None:
            a, carry = carry, None
            merged.append((a, b))
        elif merged and piece in ("", "</think>"):
            merged[-1] = (merged[-1][0], b)
        elif piece == "<think>" and b < len(text):
            carry = a
        else:
            merged.append((a, b))
    if carry is not None:
        merged.append((carry, len(text)))
    if len(merged) > 1 and not text[merged[0][0] : merged[0][1]].strip():
        merged[1] = (merged[0][0], merged[1][1])
        merged.pop(0)
    return [Unit(i, a, b, text[a:b]) for i, (a, b) in enumerate(merged)]


def segment(text: str, unit: str = "sentence") -> list[Unit]:
    """Split `text` into contiguous `unit`s ("sentence" or "step") that cover it exactly.

    An empty text has no units.
    """
    if unit not in UNITS:
        raise ValueError(f"unknown cut unit {unit!r}: expected one of {', '.join(UNITS)}")
    if not text:
        return []
    masked = _mask(text)
    breaks = _hard_breaks(text, masked)
    if unit == "step":
        return _spans_to_units(text, breaks)
    cuts = set(breaks)
    for a, b in zip(breaks, breaks[1:], strict=False):
        block = masked[a:b]
        # Lines inside a step are sentences of their own (a line without a full stop,
        # such as an equation, ends where the line ends).
        for m in re.finditer(r"[^\n]*\n?", block):
            if not m.group(0):
                continue
            line_start = a + m.start()
            cuts.add(line_start)
            starts = [s.start for s in _segmenter().segment(_mask_numbers(m.group(0)))]
            ends = [*starts[1:], len(m.group(0))][: len(starts)]
            opener = False
            for s, e in zip(starts, ends, strict=True):
                # an enumeration marker alone ("1. ") opens the sentence after it
                if not opener:
                    cuts.add(line_start + s)
                opener = bool(_MARKER_ONLY.match(m.group(0)[s:e]))
    return _spans_to_units(text, sorted(cuts))


@dataclass(frozen=True)
class Cut:
    """A cut before unit `unit_index`: the first `cut_tokens` tokens, ending at `char_offset`
    of the decoded response text."""

    unit_index: int
    cut_tokens: int
    char_offset: int


def _decoded_length(tokenizer: Any, ids: Sequence[int], k: int, text: str) -> int:
    """How many characters of `text` the first `k` tokens decode to."""
    prefix = tokenizer.decode(list(ids[:k]), skip_special_tokens=True)
    n = 0
    for x, y in zip(prefix, text, strict=False):
        if x != y:
            break
        n += 1
    return n


def unit_cuts(text: str, token_ids: Sequence[int], tokenizer: Any, unit: str) -> list[Cut]:
    """One cut at the start of each unit but the first, on a token boundary.

    The cut before unit `i` keeps the tokens that decode to text before the unit's first
    non-space character: the next token is the first one whose text reaches into the unit.
    Units whose start falls inside the same token as an earlier unit's share its cut; only
    the first is kept. A cut of no tokens (a unit that starts in the first token) is left
    out: it is a fresh generation, not a prefix.
    """
    units = segment(text, unit)
    n = len(token_ids)
    cache: dict[int, int] = {0: 0, n: len(text)}

    def offset(k: int) -> int:
        if k not in cache:
            cache[k] = _decoded_length(tokenizer, token_ids, k, text)
        return cache[k]

    cuts: list[Cut] = []
    for u in units[1:]:
        target = u.content_start
        lo, hi = 0, n  # largest k with offset(k) <= target
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if offset(mid) <= target:
                lo = mid
            else:
                hi = mid - 1
        if lo == 0 or (cuts and cuts[-1].cut_tokens == lo):
            continue
        cuts.append(Cut(u.index, lo, offset(lo)))
    return cuts


@dataclass(frozen=True)
class CutSettings:
    """The config's `cuts` block: where responses are cut."""

    unit: str = "fraction"  # "fraction" (the `levels` grid) | "sentence" | "step"
    every: int = 1  # keep the cut before every `every`-th unit
    max: int | None = None  # at most this many cuts per response, spread evenly

    @classmethod
    def from_mapping(cls, block: Mapping[str, Any] | None) -> CutSettings:
        settings = cls(**(block or {}))
        if settings.unit not in ("fraction", *UNITS):
            raise ValueError(f"cuts.unit {settings.unit!r}: expected fraction, {', '.join(UNITS)}")
        if settings.every < 1 or (settings.max is not None and settings.max < 1):
            raise ValueError(f"cuts.every and cuts.max must be at least 1, got {settings}")
        return settings


def select_cuts(cuts: Sequence[Cut], every: int = 1, most: int | None = None) -> list[Cut]:
    """The cuts before every `every`-th unit, then at most `most` of them spread evenly
    over the response (the first and the last kept)."""
    kept = [c for c in cuts if c.unit_index % every == 0]
    if most is None or len(kept) <= most:
        return kept
    if most == 1:
        return [kept[len(kept) // 2]]
    picks = sorted({round(i * (len(kept) - 1) / (most - 1)) for i in range(most)})
    return [kept[i] for i in picks]


def response_cuts(
    text: str, token_ids: Sequence[int], tokenizer: Any, settings: CutSettings
) -> list[Cut]:
    """The cuts of one response that `settings` keeps: the fixed grid of units cuts at all
    of them, adaptive sampling chooses among them."""
    return select_cuts(
        unit_cuts(text, token_ids, tokenizer, settings.unit), settings.every, settings.max
    )


def truncate_at_units(base: Any, tokenizer: Any, settings: CutSettings) -> Any:
    """A TRUNCATED frame of the unit cuts of every base response. The level of a cut is
    its token fraction `cut_tokens / L`, so the later stages and the window rules read it
    like a grid level (each response has its own)."""
    import polars as pl

    from critical_windows.io import tables

    rows = []
    for b in base.select("question_id", "response_token_ids", "response_text").to_dicts():
        ids, text = b["response_token_ids"], b["response_text"]
        n_units = len(segment(text, settings.unit))
        for c in response_cuts(text, ids, tokenizer, settings):
            rows.append(
                {
                    "question_id": b["question_id"],
                    "level": c.cut_tokens / len(ids),
                    "n_response_tokens": len(ids),
                    "cut_tokens": c.cut_tokens,
                    "prefix_token_ids": list(ids[: c.cut_tokens]),
                    "prefix_text": tokenizer.decode(
                        list(ids[: c.cut_tokens]), skip_special_tokens=True
                    ),
                    "char_offset": c.char_offset,
                    "unit_index": c.unit_index,
                    "n_units": n_units,
                }
            )
    arrow = tables.pa.Table.from_pylist(rows, schema=tables.TRUNCATED)
    return pl.from_arrow(arrow)
