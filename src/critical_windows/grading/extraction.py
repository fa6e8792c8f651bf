"""Read the committed answer out of a model's follow-up text.

The follow-up was asked for in the form "The answer is ANSWER" (MATH: "The answer is
$ANSWER$"), but models, small ones above all, write it in many ways, ramble on afterwards,
repeat the question or invent a new one. Extraction therefore tries explicit patterns in
order of confidence and, within a pattern, takes the first commitment: the greedy follow-up
answers first and rambles later. When nothing commits, the answer is missing with a reason;
it is never guessed.

Extraction is pure text work. Whether a MATH answer parses, and what it equals, is decided
by `critical_windows.grading.grader` through math-verify.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from critical_windows.catalog import LETTERS
from critical_windows.grading.golds import braced

EMPTY = "empty_response"
NO_ANSWER = "no_answer"
AMBIGUOUS = "ambiguous"
OUT_OF_RANGE = "letter_out_of_range"
UNPARSEABLE = "unparseable"
CUT = "cut_by_max_tokens"
NOT_ELICITED = "not_elicited"
GOLD_UNPARSEABLE = "gold_unparseable"

MISSING_REASONS = (
    EMPTY,
    NO_ANSWER,
    AMBIGUOUS,
    OUT_OF_RANGE,
    UNPARSEABLE,
    CUT,
    NOT_ELICITED,
    GOLD_UNPARSEABLE,
)
"""Every `missing_reason` grading can give:

- empty_response: the answer text is empty or only whitespace.
- no_answer: no pattern commits to an answer.
- ambiguous: the answer commits to several choices at once ("(B) or (C)").
- letter_out_of_range: only letters that the question does not have ("(E)" of four).
- unparseable: a MATH answer was found but math-verify cannot read it as mathematics.
- cut_by_max_tokens: no_answer or unparseable, and the answer hit its token limit.
- not_elicited: the input has no elicited answer for this orig, stump or direct text.
- gold_unparseable: math-verify cannot read the MATH gold itself; the flags that compare
  with the gold are null (the `gold_missing_reason` of the graded table, kind "gold" in
  the missing-answer counts, `missing_reason` of the re-grading CLI).
"""


@dataclass(frozen=True)
class Extraction:
    """An extracted answer, or None with the reason it is missing."""

    answer: str | None
    missing_reason: str | None = None

    def __post_init__(self) -> None:
        if (self.answer is None) == (self.missing_reason is None):
            raise ValueError("an extraction has exactly one of answer and missing_reason")


def missing_after_finish(reason: str | None, finish_reason: str | None) -> str | None:
    """An answer that ran into max_tokens and held nothing usable was cut, not silent."""
    if finish_reason == "length" and reason in (NO_ANSWER, UNPARSEABLE):
        return CUT
    return reason


# --------------------------------------------------------------------------- shared

_TEXT_COMMAND = re.compile(r"\\(?:text|textbf|textit|textrm|mathrm|mathbf|mbox)\s*\{([^{}]*)\}")
# "answer", but not the prompt's placeholder ANSWER, which models often echo; an
# upper-case label ("FINAL ANSWER - b", "ANSWER: C") is an answer word.
_ANSWER_WORD = (
    r"\b(?:(?-i:(?<=FINAL\s)ANSWER|ANSWER(?=\s*[:\-\u2013]|\s+IS\b))|(?-i:(?!ANSWER\b))answer)\b"
    r"(?:\s+to\s+(?:this|the)\s+(?:question|problem))?"
)
_VERB = r"(?:is|are|would\s+be|should\s+be|will\s+be|must\s+be|has\s+to\s+be|=)"
_LOOSE_ANSWER = re.compile(_ANSWER_WORD, re.IGNORECASE)
_LOOSE_VERB = re.compile(r"\s(?:is|was|would\s+be|=)\s*:?\s*", re.IGNORECASE)
_SENTENCE_END = re.compile(r"(?:[.!?;](?=\s|$)|\n)")


def _loose_anchor_ends(text: str) -> Iterator[int]:
    """Where an answer may start after "answer ... is" within one sentence.

    For answers such as "The single most likely answer to the question of how many
    divisors 196 has is 1." Every "is" of the sentence is offered, first to last.
    """
    for answer in _LOOSE_ANSWER.finditer(text):
        end = _SENTENCE_END.search(text, answer.end())
        limit = min(end.start() if end else len(text), answer.end() + 150)
        for verb in _LOOSE_VERB.finditer(text, answer.end(), limit):
            yield verb.end()


def _strip_text_commands(text: str) -> str:
    for _ in range(3):
        text, n = _TEXT_COMMAND.subn(r"\1", text)
        if not n:
            break
    return text


def _first_boxed(text: str) -> tuple[str, bool] | None:
    """The content of the first `\\boxed{...}` (or `\\fbox{...}`), nested braces included."""
    match = re.search(r"\\(?:boxed|fbox)\s*\{", text)
    if match is None:
        return None
    start = match.end() - 1
    group = braced(text, start)
    return (group[0], True) if group else (text[start + 1 :], False)


# --------------------------------------------------------------------------- multiple choice

# What a letter may look like right after an anchor such as "The answer is". Lower-case
# letters count only in forms that cannot be an article or a pronoun ("answer: c", "(b)");
# a lone "a" or "i" ending the text is more likely a word cut short than a choice.
_LETTER = re.compile(
    r"""
    (?:(?i:the\s+)?(?i:option|choice|letter)\s*[:#]?\s*)?   # "option B", "choice: (b)"
    ["'\u201c\u2018]?
    (?:
        \\(?:boxed|fbox)\s*\{\s*[(\[]?(?P<boxed>[A-Za-z])[)\]]?\s*\}
      | [(\[](?P<paren>[A-Za-z])[)\]]
      | (?P<punct>[A-Za-z])(?![.][A-Za-z])(?=["'\u201d\u2019]?[).:,;!?\]])
      | (?P<end>[A-Zb-hj-z])(?=["'\u201d\u2019]?(?:\s*$|\s*\n|\s+[-\u2013\u2014(]))
      | (?P<upper>[A-Z])(?=\s+[^a-z\s])
      | (?P<word>[B-HJ-Z])(?=\s+[a-z])
      | (?P<conj>[AI])(?=\s+(?:because|since|as|is|was|which|and|or|but|not)\b)
    )
    """,
    re.VERBOSE,
)
_MC_ANCHORS = re.compile(
    rf"""
    (?:{_ANSWER_WORD}(?:\s+{_VERB})?(?:\s+(?:therefore|actually|then))?
      | \b(?:correct|right|best|most\s+(?:likely|reasonable|plausible|appropriate))
        \s+(?:option|choice|letter|answer)\s+{_VERB}(?:\s+actually)?
      | \b(?:my|our)\s+(?:final\s+)?(?:pick|choice|selection|guess|bet|vote)
        (?:\s+{_VERB})?
      | \bI(?:\s+would|\s+will|'d|'ll|\s+am\s+going\s+to|'m\s+going\s+to)?
        \s+(?:choose|select|pick|go\s+(?:with|for)|opt\s+for|say)
      | \bI(?:'m|\s+am)\s+(?:going|sticking)\s+with
      | \bit(?:'s|\s+is|\s+(?:must|should|would|has\s+to)\s+be)(?:\s+actually)?
        (?=\s+(?:option\s+|choice\s+)?[(\[]?[A-Z]\b)
    )\s*[:=\-\u2013]?\s*
    """,
    re.VERBOSE | re.IGNORECASE,
)
# A letter named before what commits to it: "E is the best fit here", "only A is left",
# "which leaves option C as the correct one".
_LETTER_FIRST = re.compile(
    r"""
    (?:\b(?i:only|leaves|leaving)\s+(?i:option\s+|choice\s+)?)?
    (?:[(\[](?P<paren>[A-Za-z])[)\]]|\b(?P<bare>[A-Z])\b(?![.'\u2019][A-Za-z]))
    \s+(?i:
        (?:is|seems|appears\s+to\s+be|looks\s+like)\s+(?:the\s+|our\s+)?
          (?:best|correct|right|most\s+\w+|only\s+\w+)\s+(?:fit|answer|choice|option|match|one)
      | (?:is|seems|appears)\s+(?:to\s+be\s+)?(?:left|correct|right)
      | remains | fits\s+best | it\s+is
      | as\s+the\s+(?:correct|right|best|only)\s+(?:one|answer|choice|option)
    )
    # a commitment, not a condition ("A is correct only if ...")
    (?=\s*(?:[.!,;:)]|$|\n|\s(?i:here|because|since|as|given|among|of\s+all|overall)\b))
    """,
    re.VERBOSE,
)
# A bare closing "Thus B." or "So, (C)" that ends the text.
_CLOSING = re.compile(
    r"""(?:^|[.!?:\n])\s*(?i:thus|so|therefore|hence|consequently)\s*,?\s*
    (?:[(\[](?P<paren>[A-Za-z])[)\]]|(?P<bare>[A-Z]))\s*[.!]?\s*$""",
    re.VERBOSE,
)
# Where a text takes back what it committed to.
_RETRACTION = re.compile(
    r"""\b(?:wait|actually|on\s+second\s+thought|hold\s+on|correction|scratch\s+that
      | i\s+(?:made\s+an?\s+(?:mistake|error)|was\s+wrong|misread|misunderstood
          |overlooked|take\s+(?:that|it)\s+back)
      | re-?reading | oops | correcting\s+myself
      | that(?:'s|\s+is|\s+was)\s+(?:wrong|incorrect|not\s+right)
      | let\s+me\s+(?:re-?consider|re-?check|double[-\s]check|re-?think|re-?evaluate|correct
          |revise|fix)
      | (?:up)?on\s+(?:closer|further)\s+(?:inspection|reflection|thought|review)
      | no,?\s+wait)\b""",
    re.VERBOSE | re.IGNORECASE,
)
# A question the model makes up after answering: nothing after it is about this question.
_NEW_QUESTION = re.compile(r"\n\s*(?:#+\s*)?(?:Question|Q)\s*\d*\s*[:.]", re.IGNORECASE)
# A second choice named right after the first: "(B) or (C)", "A and B", "B/C".
_ALSO = re.compile(
    r"""\s*(?:,|/|&|\bor\b|\band\b)\s*(?:(?:option|choice)\s+)?
    (?:[(\[](?P<paren>[A-Za-z])[)\]]|(?P<bare>(?-i:[A-Z]))(?![A-Za-z]|[.][A-Za-z]))""",
    re.VERBOSE | re.IGNORECASE,
)
_NAMED = re.compile(
    r"\b(?i:option|choice)\b\s*[:#]?\s*(?:[(\[](?P<paren>[A-Za-z])[)\]]|(?P<bare>[A-Z])(?![A-Za-z]))"
)
_PARENS = re.compile(r"[(\[]([A-Z])[)\]]")
_LINE_START = re.compile(r"^[ \t]*([A-Z])[).:](?=\s)", re.MULTILINE)


_ANSWER_TAG = re.compile(r"<\s*(?:final[_ ]?)?answer\s*>", re.IGNORECASE)
_CLOSING_TAG = re.compile(r"<\s*/\s*(?:final[_ ]?)?answer\s*>", re.IGNORECASE)
# The prompt's format instruction echoed: 'the format "The answer is ANSWER", where ANSWER
# is your answer'.
_PROMPT_ECHO = re.compile(
    r"[^.\n]*(?:\bANSWER\s+is\s+your|\bis\s+[\"'\u201c]?\$?ANSWER\b(?!\s*[:\-\u2013]))[^.\n]*"
)


_MARKUP = re.compile(r"\*+|__|\$|\\[()\[\]]")
_HEADING = re.compile(r"^[ \t]*#{1,6}[ \t]*", re.MULTILINE)


def _clean_choice_text(text: str) -> str:
    """Markup off: `\\text{}`, bold, math delimiters, headings; answer tags become labels;
    sentences that echo the prompt's placeholder ANSWER go."""
    text = _strip_text_commands(text)
    text = _ANSWER_TAG.sub("\nAnswer: ", text)
    text = _CLOSING_TAG.sub("\n", text)
    text = _MARKUP.sub("", text)
    text = _HEADING.sub("", text)
    return _PROMPT_ECHO.sub(" ", text) if "ANSWER" in text else text


def _letter_of(match: re.Match[str]) -> str:
    return next(v for v in match.groupdict().values() if v).upper()


def _normalise_phrase(text: str) -> str:
    text = _clean_choice_text(text).lower()
    text = re.sub(r"[^\w\s%.-]|(?<!\d)[.]|[.](?!\d)", " ", text)
    return " ".join(text.split())


def answer_phrases(text: str) -> list[str]:
    """The normalised phrases an answer may name a choice by, most explicit first.

    Each is what follows an anchor such as "The answer is" up to the end of the sentence,
    then the first sentence of the answer.
    """
    clean = _clean_choice_text(text)
    phrases = []
    for start in [m.end() for m in _MC_ANCHORS.finditer(clean)] + [0]:
        end = _SENTENCE_END.search(clean, start)
        phrases.append(_normalise_phrase(clean[start : end.start() if end else len(clean)]))
    return phrases


def normalise_choice(choice: str) -> str:
    """A choice text in the form `answer_phrases` gives."""
    return _normalise_phrase(choice)


def letter_of_phrases(phrases: Sequence[str], choices: Sequence[str]) -> str | None:
    """The first phrase that is exactly one choice's text, as that choice's letter.

    Both arguments are normalised (`answer_phrases`, `normalise_choice`).
    """
    for phrase in phrases:
        hits = [i for i, choice in enumerate(choices) if choice and choice == phrase]
        if len(hits) == 1:
            return LETTERS[hits[0]]
    return None


def match_choice_text(text: str, choices: Sequence[str]) -> str | None:
    """The letter whose choice text is exactly what the answer says, if exactly one is:
    "The answer is Paris." -> the letter of "Paris"."""
    if not choices or not text:
        return None
    return letter_of_phrases(answer_phrases(text), [normalise_choice(c) for c in choices])


def _listed_letters(clean: str, valid: str) -> set[str]:
    """Letters named as options anywhere: "option B", "(B)", or "B)"/"B." opening a line."""
    named = [(m["paren"] or m["bare"]).upper() for m in _NAMED.finditer(clean)]
    named += _PARENS.findall(clean) + _LINE_START.findall(clean)
    return {letter for letter in named if letter in valid}


_COMMITTING = re.compile(
    r"\b(?:correct|right|best|answer|true|choose|pick|select|go\s+with|think|believe"
    r"|guess|likely|must\s+be|should\s+be)\b",
    re.IGNORECASE,
)


def _named_letter_counts(clean: str, letter: str) -> bool:
    """Whether the one choice named somewhere ("option B", "(B)") may stand as the answer.

    Only in a short answer that ends with it or ends its sentence ("Option D", "Option C,
    Rome."), or when the sentence naming it commits ("I think option B fits"): a walk
    through the options ("Option A says that ..."), cut off or not, commits to none.
    """
    named = re.compile(rf"(?:\b(?i:option|choice)\s*[:#]?\s*|[(\[])?\b{letter}\b")
    if len(clean.split()) <= 8 and (
        re.search(r"[.!?)\]]\s*$", clean) or re.search(rf"\b{letter}[)\]]?\s*$", clean)
    ):
        return True
    for sentence in re.split(r"(?<=[.!?])\s+|\n+", clean):
        if named.search(sentence) and _COMMITTING.search(sentence):
            return True
    return False


def extract_letter(text: str | None, n_choices: int) -> Extraction:
    """The letter a multiple-choice answer commits to, among the first `n_choices` letters.

    In order of confidence: a letter right after "answer is"/"answer:"/"FINAL ANSWER -"/
    "the correct option is"/"my pick would be"/"I'd go with" (answer tags and markdown
    headings count as "Answer:"); the first such commitment counts, unless the text then
    takes it back ("Wait, ...", "Actually, ...", "On second thought") and commits again,
    when the last commitment after the take-back does. Then: a `\\boxed{}` letter; a
    letter named before its commitment ("E is the best fit", "only A is left") or in a
    closing "Thus B."; a letter after "answer ... is" in one sentence; a letter opening
    the response ("B) Paris") unless the response lists several options; "option B",
    "choice (B)" or "(B)" anywhere, when they name one choice only and the text is short
    or ends its sentence. A lone article "A" or pronoun "I" is no letter. Missing reasons:
    empty_response, ambiguous (several choices at once), letter_out_of_range (only
    letters the question lacks), no_answer.
    """
    if text is None or not text.strip():
        return Extraction(None, EMPTY)
    valid = LETTERS[:n_choices]
    clean = _clean_choice_text(text)
    out_of_range = False

    def verdict(letter: str, end: int | None) -> Extraction | None:
        nonlocal out_of_range
        if letter not in valid:
            out_of_range = True
            return None
        if end is not None:
            also = _ALSO.match(clean, end)
            if also:
                other = (also["paren"] or also["bare"]).upper()
                if other != letter and other in valid:
                    return Extraction(None, AMBIGUOUS)
        return Extraction(letter)

    commitments: list[tuple[int, Extraction]] = []
    for anchor in _MC_ANCHORS.finditer(clean):
        match = _LETTER.match(clean, anchor.end())
        if match and (found := verdict(_letter_of(match), match.end())):
            commitments.append((anchor.start(), found))
    if commitments:
        return _after_take_backs(clean, commitments, valid)

    boxed = _first_boxed(clean)
    if boxed is not None:
        inner = boxed[0].strip().strip("()[] ")
        if len(inner) == 1 and inner.isalpha() and (found := verdict(inner.upper(), None)):
            return found

    for pattern in (_LETTER_FIRST, _CLOSING):
        for match in pattern.finditer(clean):
            letter = (match["paren"] or match["bare"]).upper()
            if (found := verdict(letter, None)) is not None:
                return found

    for end in _loose_anchor_ends(clean):
        match = _LETTER.match(clean, end)
        if match and (found := verdict(_letter_of(match), match.end())):
            return found

    listed = _listed_letters(clean, valid)
    match = _LETTER.match(clean, len(clean) - len(clean.lstrip()))
    if (
        match
        and not _article_or_pronoun(clean, match)
        and listed <= {_letter_of(match)}
        and (found := verdict(_letter_of(match), match.end()))
    ):
        return found

    if len(listed) == 1 and _named_letter_counts(clean, next(iter(listed))):
        return Extraction(listed.pop())
    if len(listed) > 1:
        return Extraction(None, AMBIGUOUS)
    if _PARENS.search(clean) or _NAMED.search(clean):
        out_of_range = True
    return Extraction(None, OUT_OF_RANGE if out_of_range else NO_ANSWER)


def _article_or_pronoun(clean: str, match: re.Match[str]) -> bool:
    """Whether an "A" or "I" opening the response is the article or the pronoun: it is a
    choice only as "(A)", "A)", "A." and the like, or alone on its line."""
    if _letter_of(match) not in "AI" or match.lastgroup in ("boxed", "paren", "punct"):
        return False
    return not re.match(r"[\"'\u201d\u2019]?[ \t]*(?:$|\n)", clean[match.end() :])


def _after_take_backs(
    clean: str, commitments: list[tuple[int, Extraction]], valid: str
) -> Extraction:
    """The first commitment, or the last one after the text takes the first back; after
    a take-back, "E is the best fit" and a closing "Thus B." commit too.

    A made-up next question ends what belongs to this answer.
    """
    first_at, first = commitments[0]
    question = _NEW_QUESTION.search(clean, first_at)
    limit = question.start() if question else len(clean)
    take_back = _RETRACTION.search(clean, first_at + 1, limit)
    if take_back is None:
        return first
    later = commitments[1:] + [
        (match.start(), Extraction(letter))
        for pattern in (_LETTER_FIRST, _CLOSING)
        for match in pattern.finditer(clean, take_back.start())
        if (letter := (match["paren"] or match["bare"]).upper()) in valid
    ]
    after = [
        found for at, found in sorted(later, key=lambda c: c[0]) if take_back.start() < at < limit
    ]
    return after[-1] if after else first


def extract_choice(text: str | None, n_choices: int, choices: Sequence[str] = ()) -> Extraction:
    """`extract_letter`, falling back to the exact text of one of `choices`."""
    found = extract_letter(text, n_choices)
    if found.missing_reason in (NO_ANSWER, OUT_OF_RANGE) and text:
        letter = match_choice_text(text, choices[:n_choices])
        if letter is not None:
            return Extraction(letter)
    return found


# --------------------------------------------------------------------------- MATH

_MATH_ANCHORS = re.compile(
    rf"(?:\bfinal\s+)?{_ANSWER_WORD}(?P<verb>\s+{_VERB}|\s*[:=])?(?:\s*[:=])?\s*",
    re.IGNORECASE,
)
_PLACEHOLDER = re.compile(r"\bANSWER\b")
_MATH_WORDS = {"pi", "sqrt", "infinity", "inf", "sin", "cos", "tan", "log", "ln", "mod"}
_MATH_CHARS = re.compile(r"[\d\\+\-*/^=()\[\]{}<>|_%\u03c0\u221a\u221e]")
_STOP = re.compile(r"[.!?;](?=\s|$)|,\s+(?=[A-Za-z]{2})|\n")


def _is_math_token(token: str) -> bool:
    """Digits, operators and LaTeX are mathematics; so are lone variables, not words."""
    bare = token.strip(",:\"'")
    if _MATH_CHARS.search(bare) or bare.lower() in _MATH_WORDS:
        return True
    return len(bare) == 1 and bare.isalpha() and bare not in "aAI"


def _closing_dollar(text: str, start: int) -> int:
    """Index of the next unescaped `$` on the same line at or after `start`, or -1."""
    for i in range(start, len(text)):
        if text[i] == "\n":
            return -1
        if text[i] == "$" and text[i - 1] != "\\":
            return i
    return -1


def _tidy_math(content: str) -> str | None:
    boxed = _first_boxed(content)
    if boxed is not None:
        content = boxed[0]
    content = re.sub(r"\\displaystyle|\\[,;!]|\\quad", " ", content)
    content = re.sub(r"\\?\s*[.,;:]\s*$", "", " ".join(content.split()))
    content = re.sub(r"^=\s*", "", content).strip()
    content = re.sub(
        r"\u221a\s*(\d+|\{[^{}]*\})", lambda m: rf"\sqrt{{{m[1].strip('{}')}}}", content
    )
    if not content or _PLACEHOLDER.search(content):
        return None
    return content


def _plain_math(line: str, strong: bool) -> str | None:
    """A plain-text answer: the leading mathematical words of the sentence, units dropped.

    "12 cm." -> "12", "2 pi" -> "2 \\pi", "$18.90" -> "18.90". After a strong anchor ("is",
    ":") one or two plain words ("Monday", "even") are a text answer, as MATH writes them.
    """
    stop = _STOP.search(line)
    # Markdown emphasis goes; a product such as 6*n stays.
    emphasis = r"(?:^|(?<=\s))\*+(?=\S)|(?<=\S)\*+(?=$|\s|[.,;:!?])"
    sentence = re.sub(emphasis, "", line[: stop.start()] if stop else line).strip()
    kept: list[str] = []
    for token in sentence.split():
        if not _is_math_token(token):
            break
        kept.append(token)
    if kept:
        answer = re.sub(r"^\$(?=\s*\d)", "", " ".join(kept))
        return _tidy_math(re.sub(r"\bpi\b", r"\\pi", answer))
    words = sentence.strip(" \"'")
    if strong and re.fullmatch(r"[A-Za-z][A-Za-z\-]*(?: [A-Za-z][A-Za-z\-]*)?", words):
        return _tidy_math(rf"\text{{{words}}}")
    return None


def _math_after(text: str, pos: int, strong: bool) -> str | None:
    """The answer written at `pos`: a math environment, a `\\boxed{}`, or plain text."""
    rest = text[pos:].lstrip()
    if rest.startswith("$$"):
        end = rest.find("$$", 2)
        return _tidy_math(rest[2:end] if end >= 0 else rest[2:])
    if rest.startswith("$"):
        end = _closing_dollar(rest, 1)
        if end >= 0:
            return _tidy_math(rest[1:end])
        if not re.match(r"\$\s*\d", rest):
            return _tidy_math(rest[1:].split("\n", 1)[0])
    for opening, closing in ((r"\(", r"\)"), (r"\[", r"\]")):
        if rest.startswith(opening):
            end = rest.find(closing, 2)
            return _tidy_math(rest[2:end] if end >= 0 else rest[2:])
    if re.match(r"\\(?:boxed|fbox)\s*\{", rest):
        return _tidy_math(rest)
    return _plain_math(rest.split("\n", 1)[0], strong)


def extract_math(text: str | None) -> Extraction:
    """The final expression of a MATH answer, as LaTeX text.

    In order of confidence: what follows "The answer is" / "Final answer:" (a `$...$`,
    `$$...$$`, `\\(...\\)` or `\\[...\\]` environment, a `\\boxed{}`, or plain text such as
    "12 cm." -> "12"); the first `\\boxed{}` anywhere; what follows "answer ... is" in one
    sentence ("the answer to the question of how many divisors 196 has is 1."); a response
    that is nothing but one expression. Whether it parses is decided by grading.
    """
    if text is None or not text.strip():
        return Extraction(None, EMPTY)
    clean = text.replace("**", "")
    for anchor in _MATH_ANCHORS.finditer(clean):
        answer = _math_after(clean, anchor.end(), strong=anchor["verb"] is not None)
        if answer is not None:
            return Extraction(answer)
    boxed = _first_boxed(clean)
    if boxed is not None and (answer := _tidy_math(boxed[0])) is not None:
        return Extraction(answer)
    for end in _loose_anchor_ends(clean):
        if (answer := _math_after(clean, end, strong=False)) is not None:
            return Extraction(answer)
    whole = clean.strip().split("\n", 1)[0]
    if whole.startswith(("$", r"\(", r"\[")) or all(map(_is_math_token, whole.split())):
        answer = _math_after(whole, 0, strong=False)
        if answer is not None:
            return Extraction(answer)
    return Extraction(None, NO_ANSWER)


def extract(
    text: str | None, answer_type: str, n_choices: int = 0, choices: Sequence[str] = ()
) -> Extraction:
    """Extract by answer type: "multiple_choice" or "math"."""
    if answer_type == "multiple_choice":
        return extract_choice(text, n_choices, choices)
    if answer_type == "math":
        return extract_math(text)
    raise ValueError(f"unknown answer_type {answer_type!r}: expected 'multiple_choice' or 'math'")
