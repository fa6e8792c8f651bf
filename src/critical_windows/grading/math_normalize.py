"""The MATH benchmark's answer normalisation, as the prm800k grader applies it.

Hendrycks et al., "Measuring Mathematical Problem Solving With the MATH Dataset" (2021),
`math_equivalence._strip_string`, and openai/prm800k's `grading/math_normalize.
normalize_answer`, which first strips an enclosing `\\text{}`. Written here faithfully,
quirks included (units are dropped only after "\\text{ " with a space, "0.5" becomes
"\\frac{1}{2}" but "0.25" stays), because no maintained package ships it. Two answers are
the same to this judge when their normalised strings are identical (`string_equivalent`).
"""

from __future__ import annotations

import re


def _fix_fracs(string: str) -> str:
    substrs = string.split("\\frac")
    new_str = substrs[0]
    if len(substrs) > 1:
        for substr in substrs[1:]:
            new_str += "\\frac"
            if len(substr) > 0 and substr[0] == "{":
                new_str += substr
            else:
                if len(substr) < 2:
                    return string
                a, b = substr[0], substr[1]
                if b != "{":
                    new_str += "{" + a + "}{" + b + "}" + substr[2:]
                else:
                    new_str += "{" + a + "}" + b + substr[2:]
    return new_str


def _fix_a_slash_b(string: str) -> str:
    if len(string.split("/")) != 2:
        return string
    a, b = string.split("/")
    try:
        a_int, b_int = int(a), int(b)
    except ValueError:
        return string
    if string != f"{a_int}/{b_int}":
        return string
    return "\\frac{" + str(a_int) + "}{" + str(b_int) + "}"


class _Unnormalisable(Exception):
    """The original's `assert` in `_remove_right_units`: the answer is compared as is."""


def _remove_right_units(string: str) -> str:
    # "\text{ " only ever occurs (at least in the val set) when describing units
    if "\\text{ " in string:
        splits = string.split("\\text{ ")
        if len(splits) != 2:
            raise _Unnormalisable(string)
        return splits[0]
    return string


def _fix_sqrt(string: str) -> str:
    if "\\sqrt" not in string:
        return string
    splits = string.split("\\sqrt")
    new_string = splits[0]
    for split in splits[1:]:
        if len(split) > 0 and split[0] != "{":
            new_string += "\\sqrt{" + split[0] + "}" + split[1:]
        else:
            new_string += "\\sqrt" + split
    return new_string


def strip_string(string: str) -> str:
    """The MATH benchmark's `_strip_string`."""
    string = string.replace("\n", "")
    string = string.replace("\\!", "")
    string = string.replace("\\\\", "\\")
    string = string.replace("tfrac", "frac")
    string = string.replace("dfrac", "frac")
    string = string.replace("\\left", "")
    string = string.replace("\\right", "")
    string = string.replace("^{\\circ}", "")
    string = string.replace("^\\circ", "")
    string = string.replace("\\$", "")
    string = _remove_right_units(string)
    string = string.replace("\\%", "")
    string = string.replace("%", "")
    string = string.replace(" .", " 0.")
    string = string.replace("{.", "{0.")
    if len(string) == 0:
        return string
    if string[0] == ".":
        string = "0" + string
    # "k = " or "q = " at the beginning
    if len(string.split("=")) == 2 and len(string.split("=")[0]) <= 2:
        string = string.split("=")[1]
    string = _fix_sqrt(string)
    string = string.replace(" ", "")
    string = _fix_fracs(string)
    if string == "0.5":
        string = "\\frac{1}{2}"
    string = _fix_a_slash_b(string)
    return string


def normalize_answer(answer: str) -> str:
    """prm800k's `math_normalize.normalize_answer`: an enclosing `\\text{}` goes, then
    `strip_string`; an answer it cannot normalise is only stripped."""
    answer = answer.strip()
    try:
        match = re.search(r"^\\text\{(?P<text>.+?)\}$", answer)
        if match is not None:
            answer = match.group("text").strip()
        return strip_string(answer)
    except (_Unnormalisable, IndexError):
        return answer


def string_equivalent(reference: str, answer: str) -> bool:
    """The MATH benchmark's judgement: the normalised strings are identical."""
    return normalize_answer(reference) == normalize_answer(answer)
