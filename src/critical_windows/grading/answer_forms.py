"""MATH answer forms that math-verify reads wrongly, handled before and after it.

Before parsing, `normalise` rewrites the forms a careful human reads as the same answer but
math-verify does not: units and wrappers (`\\text{ cm}^2`, `^\\circ`, `\\$`), thousands
separators (`1,\\!000`, also inside a fraction), a trailing period, repeating decimals
(`0.\\overline{6}`, `0.333...`), column vectors against tuples, `x \\in (1, 4]`, and
"x = -2, 1" against "-2, 1". After parsing, `unify_symbols` makes the imaginary unit one
object (latex2sympy gives `i` other assumptions depending on where it stands, so
`3i\\sqrt{2}` and `3\\sqrt{2}i` differ). `text_answer` compares names and directions
without their case. `spurious` rejects the equalities math-verify grants that are known to
be wrong: two exact values that differ below its rounding (`1/2004!` against `1/2006!`) and
two equations that are both identities (each simplifies to 0 = 0).

Every rule is about a form, not about particular answers.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

import sympy

VERSION = "answer-forms 2"
"""Part of the grading method: cached results computed under another version are redone."""

_TEXT_WRAPPER = r"\\(?:text|textbf|textit|textrm|textnormal|mathrm|mathbf|mbox|operatorname)"
_UNITS = {
    "cm", "mm", "m", "km", "in", "inch", "inches", "ft", "foot", "feet", "yd", "yard",
    "yards", "mi", "mile", "miles", "meter", "meters", "metre", "metres", "centimeter",
    "centimeters", "kilometer", "kilometers", "millimeter", "millimeters", "g", "kg",
    "gram", "grams", "pound", "pounds", "lb", "lbs", "ounce", "ounces", "oz", "s", "sec",
    "second", "seconds", "min", "minute", "minutes", "h", "hr", "hour", "hours", "day",
    "days", "week", "weeks", "year", "years", "dollar", "dollars", "cent", "cents",
    "unit", "units", "degree", "degrees", "mph", "l", "liter", "liters", "ml", "gallon",
    "gallons", "square", "sq", "cubic", "people", "students", "ways",
}  # fmt: skip
_CONNECTORS = {"and", "or"}
_MATH_WORDS = {
    "pi", "sqrt", "sin", "cos", "tan", "cot", "sec", "csc", "log", "ln", "exp", "lim",
    "max", "min", "gcd", "lcm", "det", "arg", "mod", "inf", "infty", "infinity", "frac",
}  # fmt: skip
_SHORT_WORDS = {"no", "up", "on", "in", "at", "to", "of", "or", "an", "is", "it", "by", "am", "pm"}
_POWER = r"(?:\s*\^\s*(?:\{\s*[23]\s*\}|[23]))?"


def _drop_text_unit(match: re.Match[str]) -> str:
    """A `\\text{...}` group: a unit goes, "and"/"or" become a comma, anything else stays."""
    inner = match[1]
    words = inner.replace("\\", " ").replace(".", " ").split()
    if not words:
        return " "
    lowered = [w.lower() for w in words]
    if len(lowered) == 1 and lowered[0] in _CONNECTORS:
        return ", "
    if lowered[0] in _UNITS:
        return " "
    # After a number: "10\;\text{edges}", "65 \text{ children tickets }".
    after_number = re.search(r"[\d})\]]\s*$", match.string[: match.start()])
    if after_number and (inner[:1].isspace() or all(w.isalpha() for w in words)):
        return " "
    return match[0]


_TRAILING = re.compile(r"(?:\s|\\[,;:!]|\\quad)*(?<!\\)[.,;](?:\s|\\[,;:!])*$")
_THIN_SPACE = re.compile(r"(?<!\\)\\[,;:> ]|\\q?quad|~")
_SEPARATED = re.compile(r"(?<![\d.,])\d{1,3}(?:,\d{3})+(?![\d])")
_DEGREES = re.compile(
    r"\^\s*\{\s*\\circ\s*\}|\^\s*\\circ|\u00b0|\\degree|\^\s*\{\s*o\s*\}(?![A-Za-z])"
)
_TRIG = re.compile(r"\\(?:a|arc)?(?:sin|cos|tan|cot|sec|csc)h?(?![A-Za-z])")
_DOLLAR = re.compile(r"\\\$|\$")
_REPEATING = re.compile(r"(?<![\d.])(\d*)\.(\d*)\\(?:overline|bar|dot)\s*(?:\{\s*(\d+)\s*\}|(\d))")
_MATRIX = re.compile(
    r"\\begin\{([pbvB]?matrix)\}(?P<body>.*?)\\end\{\1\}"
    r"|\\left\s*\(\s*\\begin\{array\}\{[clr]*\}(?P<array>.*?)\\end\{array\}\s*\\right\s*\)",
    re.DOTALL,
)
_MEMBERSHIP = re.compile(r"^\s*[A-Za-z]\s*\\in\s*(?=[(\[]|\\left|\\\{|\\mathbb)")
_ANGLE = re.compile(r"\\langle\s*(.*?)\s*\\rangle", re.DOTALL)
# "x = -2, 1": one variable set to a list of values is the list (not "x = 1, y = 2").
_NAMED_LIST = re.compile(r"^\s*[A-Za-z](?:_\{?\w+\}?)?\s*=\s*(?=[^=]*,[^=]*$)")


# "0.333...", "0.1666\ldots": the cycle that repeats at the end of the digits goes on.
_ELLIPSIS_DECIMAL = re.compile(r"(?<![\d.])(\d*)\.(\d{2,})\s*(?:\\ldots|\\dots|\\cdots|\.\.\.)")
# Multi-letter unit words written without \text after a number: "12 cm^2", "5 inches".
_PLAIN_UNIT = re.compile(
    r"(?<=[\d}])\s*(?:square\s+|sq\.?\s+|cubic\s+)?"
    r"(?:cm|mm|km|ft|feet|inches|meters|metres|miles|dollars|cents|degrees|units|hours|"
    r"minutes|seconds|days|weeks|years|grams|kg|pounds|mph)\b"
    rf"{_POWER}(?=\s*(?:$|[,;)\]]))"
)


def _cycle_fraction(match: re.Match[str]) -> str:
    """0.1666... -> \\frac{1}{6}: the shortest cycle seen at least twice at the end repeats."""
    whole, digits = match[1] or "0", match[2]
    for size in range(1, len(digits) // 2 + 1):
        cycle = digits[-size:]
        reps = 1
        while digits[: len(digits) - reps * size].endswith(cycle):
            reps += 1
        if reps >= 2:
            fixed = digits[: len(digits) - reps * size]
            value = Fraction(int(whole)) + Fraction(int(fixed or "0"), 10 ** len(fixed))
            value += Fraction(int(cycle), (10**size - 1) * 10 ** len(fixed))
            return rf"\frac{{{value.numerator}}}{{{value.denominator}}}"
    return match[0]


def _repeating_fraction(match: re.Match[str]) -> str:
    """0.1\\overline{6} -> \\frac{1}{6}: the value of a repeating decimal, exactly."""
    whole, fixed, cycle = match[1] or "0", match[2], match[3] or match[4]
    value = Fraction(int(whole)) + Fraction(int(fixed or "0"), 10 ** len(fixed))
    value += Fraction(int(cycle), (10 ** len(cycle) - 1) * 10 ** len(fixed))
    return rf"\frac{{{value.numerator}}}{{{value.denominator}}}"


def _vector_as_tuple(match: re.Match[str]) -> str:
    """A one-column or one-row matrix is the tuple of its entries; a real matrix stays."""
    body = match["body"] if match["body"] is not None else match["array"]
    rows = [r for r in re.split(r"\\\\", body) if r.strip()]
    cells = [c.strip() for row in rows for c in row.split("&")]
    if len(rows) > 1 and "&" in body:
        return match[0]
    return "(" + ", ".join(cells) + ")"


def normalise(latex: str) -> str:
    """The answer with the forms math-verify misreads rewritten; see the module docstring."""
    s = " ".join(latex.split())
    s = re.sub(r",\s*\\!\s*", ",", s)  # "111, \! 111": a separator, spaces and all
    s = s.replace(r"\!", "").replace(r"\left.", "").replace(r"\right.", "")
    s = s.replace("{,}", ",")
    s = re.sub(r"(?<=\d)\\,(?=\d{3}(?!\d))", "", s)  # 1\,000: a thin-space separator
    s = _MATRIX.sub(_vector_as_tuple, s)
    s = _THIN_SPACE.sub(" ", s)
    s = _ANGLE.sub(r"(\1)", s)
    s = _DOLLAR.sub("", s)
    if _TRIG.search(s):  # in "\cos 15^\circ" the degrees are part of the value
        s = re.sub(
            rf"(\d+(?:\.\d+)?)\s*(?:{_DEGREES.pattern})", r"\\left(\\frac{\1\\pi}{180}\\right)", s
        )
    else:
        s = _DEGREES.sub("", s)
    s = re.sub(r"\\text\s*\{\s*\\%\s*\}|\\text\s*\{\s*percent\s*\}", r"\\%", s)
    # A unit after a number or a closing bracket; a whole-text answer keeps its text.
    s = re.sub(
        rf"(?<=[\d}})\]a-zA-Z\s])\s*{_TEXT_WRAPPER}\s*\{{([^{{}}]*)\}}{_POWER}",
        _drop_text_unit,
        s,
    )
    s = _PLAIN_UNIT.sub("", s)
    s = _REPEATING.sub(_repeating_fraction, s)
    s = _ELLIPSIS_DECIMAL.sub(_cycle_fraction, s)
    if not s.lstrip().startswith(("(", "[", r"\{", r"\left", r"\langle")):
        s = _SEPARATED.sub(lambda m: m[0].replace(",", ""), s)
    s = re.sub(r",\s*(?:,\s*)+", ", ", s)  # "7, -2, \text{ and } -5"
    s = _MEMBERSHIP.sub("", s)
    s = _NAMED_LIST.sub("", s)
    s = _TRAILING.sub("", s)
    return " ".join(s.split()) or latex.strip()


def text_answer(latex: str) -> str | None:
    """A name, word or phrase answer ("\\text{Tuesday}", "North") as a key: lower case,
    without spaces and hyphens ("South-East", "south east" -> "southeast"); else None.

    Plain words count only from three letters up (or short words such as "no") and never
    as function names, so that a product of variables such as "xy" stays mathematics.
    """
    s = latex.strip()
    wrapped = False
    for _ in range(3):
        match = re.fullmatch(rf"{_TEXT_WRAPPER}\s*\{{(.*)\}}", s)
        if match is None:
            break
        s, wrapped = match[1].strip(), True
    s = re.sub(r"\\ |~", " ", s).strip(" .")
    if not re.fullmatch(r"[A-Za-z]+(?:[ '\-][A-Za-z]+)*", s):
        return None
    words = s.lower().replace("-", " ").split()
    short = any(len(w) < 3 and w not in _SHORT_WORDS for w in words)
    if not wrapped and (short or any(w in _MATH_WORDS for w in words)):
        return None
    if sum(map(len, words)) < 2:
        return None
    return "".join(words)


def same_text(a: str, b: str) -> bool | None:
    """Whether two text answers are the same name or phrase; None unless both are text.

    Two bare words compare as text only from four letters up: "abc" and "cba" may be
    products of variables, "North" and "north" are not.
    """
    key_a, key_b = text_answer(a), text_answer(b)
    if key_a is None or key_b is None:
        return None
    wrapped = re.match(_TEXT_WRAPPER, a.strip()) or re.match(_TEXT_WRAPPER, b.strip())
    if not wrapped and min(len(key_a), len(key_b)) < 4:
        return None
    return key_a == key_b


def unify_symbols(parsed: Sequence[Any]) -> list[Any]:
    """math-verify's readings with `i` as the imaginary unit and plain variables.

    latex2sympy gives a symbol assumptions from its context (`i` real in `3i\\sqrt{2}`,
    not real in `3\\sqrt{2}i`), which makes equal answers differ.
    """
    out = []
    for p in parsed:
        if isinstance(p, sympy.Basic) or getattr(p, "is_Matrix", False):
            try:
                mapping = {
                    s: sympy.I if s.name == "i" else sympy.Symbol(s.name)
                    for s in p.free_symbols
                    if isinstance(s, sympy.Symbol)
                }
                if mapping:
                    p = p.xreplace(mapping)
            except (AttributeError, TypeError, ValueError):
                pass
        out.append(p)
    return out


def _exact(expr: Any) -> bool:
    """An expression without decimals, percentages or infinities (variables allowed)."""
    return (
        isinstance(expr, sympy.Expr)
        and not getattr(expr, "is_Matrix", False)
        and not expr.has(sympy.Float, sympy.UnevaluatedExpr)
        and not expr.has(sympy.oo, -sympy.oo, sympy.zoo, sympy.nan)
    )


def _at_a_point(a: Any, b: Any) -> tuple[Any, Any]:
    """Both expressions with every variable set to the same positive irrational value, so
    that what math-verify found equal by rounding shows its difference."""
    names = sorted({s.name for s in (a.free_symbols | b.free_symbols)})
    values = {name: sympy.sqrt(2) + sympy.Rational(k + 1, 7) for k, name in enumerate(names)}
    point = {s: values[s.name] for s in a.free_symbols | b.free_symbols}
    return a.xreplace(point), b.xreplace(point)


def _identity(expr: Any) -> bool:
    """An equation whose sides are the same, such as 1 + 1 = 2 or x - x = 0."""
    if not isinstance(expr, sympy.Equality) and expr is not sympy.true:
        return False
    if expr is sympy.true:
        return True
    try:
        return sympy.simplify(expr.lhs - expr.rhs) == 0
    except Exception:  # sympy raises many kinds; undecided is "not an identity"
        return False


def _exprs(parsed: Sequence[Any]) -> list[Any]:
    return [p for p in parsed if not isinstance(p, str)]


def spurious(reference: Sequence[Any], answer: Sequence[Any]) -> bool:
    """Whether an equality math-verify granted is one of its known false positives.

    - Two exact expressions (no decimals, no percent) whose values differ: math-verify
      rounds their difference to 15 digits, so 1/2004! and 1/2006! pass. Compared here
      to 60 significant digits relative to their size, variables set to one point.
    - Two equations that are both identities: each side's difference is 0, so any two
      pass; they are the same answer only when they are written the same way.
    """
    ref, ans = _exprs(reference), _exprs(answer)
    if len(ref) != 1 or len(ans) != 1:
        return False
    a, b = ref[0], ans[0]
    if _identity(a) and _identity(b):
        strings = {p for p in reference if isinstance(p, str)}
        return not strings & {p for p in answer if isinstance(p, str)}
    if not (_exact(a) and _exact(b)):
        return False
    try:
        a, b = _at_a_point(a, b)
        diff = abs(sympy.N(a - b, 60))
        scale = max(abs(sympy.N(a, 60)), abs(sympy.N(b, 60)))
    except Exception:  # an expression sympy cannot evaluate: keep math-verify's call
        return False
    if not (diff.is_number and scale.is_number) or scale == 0:
        return False
    return bool(diff > scale * sympy.Float("1e-40", 60))
