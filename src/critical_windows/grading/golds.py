"""The gold answer of a MATH solution, also when it boxes several values.

Most MATH solutions box one answer, and the gold is the last `\\boxed{}` (`\\fbox{}`). 23 of
the 5000 test solutions box several different strings; `resources/grading/
math_multi_boxed.csv` lists them with the rule `math_gold` applies:

- `all_values`: the problem asks for every value ("Enter all the solutions, separated by
  commas", "Find all ..."): the gold is the boxed values in order, joined by ", ", so that
  an answer naming only one root is wrong and one naming all of them is right.
- `first_of_alternatives`: the solution accepts another answer besides the first ("Note:
  $\\boxed{3}$ is also accepted", "Either point is an acceptable answer"): the gold is the
  first, the one the solution derives.
- `box_is_notation`: the problem itself uses a box as notation (a function written
  `\\boxed{N}`, a blank to fill in, `\\boxed{\\phantom{2}}`): placeholder boxes and boxes an
  operator is applied to are not answers; the gold is the remaining box, or the value
  the last box is set equal to ("Finally, $\\boxed{12}=6$").
- `final_box`: anything else (the same value written twice, an intermediate result
  boxed before the one asked for): the last box, as for a single box.

Boxes that normalise to the same string under the MATH benchmark's normalisation
(`math_normalize.normalize_answer`) count once.
"""

from __future__ import annotations

import re

from critical_windows.grading.math_normalize import normalize_answer

SINGLE = "single_box"
ALL_VALUES = "all_values"
FIRST_OF_ALTERNATIVES = "first_of_alternatives"
BOX_IS_NOTATION = "box_is_notation"
FINAL_BOX = "final_box"
RULES = (SINGLE, ALL_VALUES, FIRST_OF_ALTERNATIVES, BOX_IS_NOTATION, FINAL_BOX)

_BOX = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")
_ASKS_FOR_ALL = re.compile(
    r"separated\s+by\s+commas?|\ball\s+(?:the\s+)?(?:possible\s+|real\s+|complex\s+)?"
    r"(?:values|solutions|roots|zeros|answers|angles|numbers|integers|x|points)\b"
    r"|\benter\s+(?:all|the\s+angles|each)\b|\bfind\s+all\b|\blist\s+all\b",
    re.IGNORECASE,
)
_ALTERNATIVE = re.compile(
    r"\balso\s+(?:be\s+)?(?:an?\s+)?(?:accept|correct|valid)"
    r"|\beither\b[^.]*\b(?:accept|correct|valid)|\bacceptable\b",
    re.IGNORECASE,
)
_PLACEHOLDER = re.compile(r"\s*(?:\\phantom\s*\{[^{}]*\}|\\(?:quad|,|;|\s)|\s)*\s*")
_OPERATOR_AFTER = re.compile(r"\s*(?:=|\\times|\\cdot|\\div|\+|-(?!\s*\$)|\^)")
_VALUE_AFTER_EQUALS = re.compile(
    r"\s*=\s*(-?(?:\\[dt]?frac\{[^{}]*\}\{[^{}]*\}|\d+(?:\.\d+)?|[A-Za-z](?![A-Za-z])))"
)


def braced(text: str, start: int) -> tuple[str, int] | None:
    """The brace group opening at `text[start]` and the index after it; None if unclosed.

    Escaped characters (`\\{`, `\\}`, `\\\\`) do not count as braces.
    """
    depth = 0
    i = start
    while i < len(text):
        char = text[i]
        if char == "\\":
            i += 2
            continue
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return text[start + 1 : i], i + 1
        i += 1
    return None


def boxes(text: str) -> list[tuple[str, int]]:
    """Every box in `text` in order: its content (stripped) and where the box ends.

    `\\boxed{...}`, `\\fbox{...}`, and the brace-less `\\boxed 5` (up to the end of the
    math or the line), as `datasets.last_boxed` reads them.
    """
    found = []
    for match in _BOX.finditer(text):
        rest = text[match.end() :]
        stripped = rest.lstrip()
        at = match.end() + len(rest) - len(stripped)
        if stripped.startswith("{"):
            group = braced(text, at)
            if group is not None:
                found.append((group[0].strip(), group[1]))
        elif stripped is not rest and stripped:
            value = re.split(r"[$\n]", stripped, maxsplit=1)[0].strip()
            if value:
                found.append((value, at + len(value)))
    return found


def _distinct(values: list[str]) -> list[str]:
    seen, out = set(), []
    for v in values:
        key = normalize_answer(v)
        if key not in seen:
            seen.add(key)
            out.append(v)
    return out


def math_gold(problem: str, solution: str) -> tuple[str | None, str]:
    """The gold answer of a MATH solution and the rule that gave it (`RULES`).

    None when the solution boxes nothing usable.
    """
    found = boxes(solution)
    if _BOX.search(problem):
        answers = [
            (v, end)
            for v, end in found
            if not _PLACEHOLDER.fullmatch(v) and not _OPERATOR_AFTER.match(solution, end)
        ]
        if answers and len(_distinct([v for v, _ in answers])) == 1:
            return answers[-1][0], BOX_IS_NOTATION
        set_to = [m for _, end in found if (m := _VALUE_AFTER_EQUALS.match(solution, end))]
        if not answers and set_to:
            return set_to[-1][1], BOX_IS_NOTATION
    values = [v for v, _ in found]
    if not values:
        return None, SINGLE
    distinct = _distinct(values)
    if len(set(values)) == 1:
        return values[-1], SINGLE
    if len(distinct) == 1:
        return values[-1], FINAL_BOX
    if _ASKS_FOR_ALL.search(problem):
        return ", ".join(distinct), ALL_VALUES
    if _ALTERNATIVE.search(solution, found[0][1]):
        return values[0], FIRST_OF_ALTERNATIVES
    return values[-1], FINAL_BOX
