"""How the answer a prefix leads to is read out of the model (issue #14).

Two elicitation modes:

- `followup` (the research protocol, METHOD.md §2 step 5): the assistant turn is closed,
  the conversation re-rendered through the chat template, and a new user turn asks for the
  answer. For models without a thinking format this is `prompts.elicit_messages` rendered
  as is, byte for byte the research code's prompt.
- `forced`: the assistant turn stays open. The prompt is the exact token ids the model was
  given and wrote (generation prompt + prefix + continuation), then an answer cue inside
  the same turn ("The answer is (" for letters, "The answer is $\\boxed{" for MATH), after
  closing an open thinking block. So a forced prompt is a token-exact extension of the
  generation prompt, which is also what a prefix cache serves best.

Reasoning models: a thinking format (`<think>` ... `</think>`) is detected from the chat
template and the vocabulary. With one, the chain-of-thought prefill goes where the
reasoning starts (after the opening tag, which Qwen3-style templates leave to the model and
DeepSeek-R1-style templates write themselves), and follow-up prompts splice the original
text into the rendered conversation, because these templates drop everything before
`</think>` from earlier assistant turns: the orig elicitation would otherwise lose its whole
reasoning while a truncated prefix (no `</think>` yet) keeps it.

Two readouts: `greedy` (the text of a short greedy completion, graded by extraction) and
`logprobs` (additionally the probability of every valid letter at the answer position,
renormalised over those letters, and for MATH the greedy answer's sequence log-probability).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from critical_windows.catalog import CUES, LETTERS
from critical_windows.cot import prompts

ELICITATIONS = ("followup", "forced")
READOUTS = ("greedy", "logprobs")
REASONING = ("auto", "on", "off")
THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
CUE_SEPARATOR = "\n\n"  # between the text so far and the cue, so a cut word stays cut
# The forced letter answer needs a letter and its closing parenthesis; MATH answers take
# the config's elicitation_max_tokens.
FORCED_LETTER_TOKENS = 4
_SENTINEL = "\x1fCRITICAL-WINDOWS-RESPONSE\x1f"


@dataclass(frozen=True)
class ReadoutSettings:
    """The config's `elicitation`, `answer_readout` and `reasoning` keys."""

    elicitation: str = "followup"
    answer_readout: str = "greedy"
    reasoning: str = "auto"

    def __post_init__(self) -> None:
        for key, value, allowed in (
            ("elicitation", self.elicitation, ELICITATIONS),
            ("answer_readout", self.answer_readout, READOUTS),
            ("reasoning", self.reasoning, REASONING),
        ):
            if value not in allowed:
                raise ValueError(f"{key}: {value!r} is not one of {', '.join(allowed)}")


@dataclass(frozen=True)
class ThinkingFormat:
    """A model's reasoning block: `open` ... `close`; `switch` when its template reads
    `enable_thinking`."""

    open: str = THINK_OPEN
    close: str = THINK_CLOSE
    switch: bool = False


def chat_template(tokenizer: Any, model: str) -> str:
    """The tokenizer's chat template, or an error naming the model and what to set."""
    template = getattr(tokenizer, "chat_template", None)
    if isinstance(template, dict):  # several named templates: the default one renders
        template = template.get("default")
    if (
        template is None
        and hasattr(tokenizer, "apply_chat_template")
        and not hasattr(tokenizer, "get_vocab")
    ):
        return ""  # a tokenizer with a template of its own in code (the synthetic model)
    if not template:
        raise ValueError(
            f"model {model!r} has no chat template: every prompt is rendered through it; "
            "use an instruction-tuned model, or add a `chat_template` to its "
            "tokenizer_config.json"
        )
    return str(template)


def detect_thinking(tokenizer: Any, model: str, reasoning: str = "auto") -> ThinkingFormat | None:
    """The model's thinking format: its template handles `</think>` (or reads
    `enable_thinking`), or its vocabulary has both tags as tokens. `reasoning: on` insists
    on one, `off` ignores it."""
    if reasoning == "off":
        return None
    template = chat_template(tokenizer, model)
    vocab = tokenizer.get_vocab() if hasattr(tokenizer, "get_vocab") else {}
    in_template = THINK_CLOSE in template or "enable_thinking" in template
    in_vocab = THINK_OPEN in vocab and THINK_CLOSE in vocab
    if in_template or in_vocab:
        return ThinkingFormat(switch="enable_thinking" in template)
    if reasoning == "on":
        raise ValueError(
            f"model {model!r}: reasoning is 'on' but neither its chat template nor its "
            f"vocabulary has a {THINK_OPEN}/{THINK_CLOSE} thinking format; set reasoning: "
            "auto or off"
        )
    return None


def thinking_open(text: str, fmt: ThinkingFormat | None) -> bool:
    """Whether `text` ends inside an unclosed thinking block."""
    return fmt is not None and text.rfind(fmt.open) > text.rfind(fmt.close)


def reasoning_length(ids: Sequence[int], tokenizer: Any, fmt: ThinkingFormat | None) -> int:
    """How many of a response's tokens are reasoning: those before the close tag (all of
    them without a thinking format, or when the reasoning never closes). Cut fractions of a
    reasoning model count these, so f = 0.9 is late in the reasoning, not in the answer."""
    if fmt is None:
        return len(ids)
    tag = encode(tokenizer, fmt.close)
    if len(tag) == 1 and tag[0] in ids:
        return list(ids).index(tag[0])
    if fmt.close not in tokenizer.decode(list(ids)):
        return len(ids)
    lo, hi = 1, len(ids)  # the shortest prefix whose text holds the tag
    while lo < hi:
        mid = (lo + hi) // 2
        if fmt.close in tokenizer.decode(list(ids[:mid])):
            hi = mid
        else:
            lo = mid + 1
    return max(0, lo - len(tag))


def encode(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


class Prompter:
    """Every prompt of the model stages for one model, through its own chat template."""

    def __init__(self, tokenizer: Any, model: str, settings: ReadoutSettings | None = None):
        self.tokenizer = tokenizer
        self.model = model
        self.settings = settings or ReadoutSettings()
        chat_template(tokenizer, model)
        self.thinking = detect_thinking(tokenizer, model, self.settings.reasoning)
        template = getattr(tokenizer, "chat_template", None) or ""
        self.template_kwargs: dict[str, Any] = {}
        if "enable_thinking" in str(template) and self.settings.reasoning != "auto":
            self.template_kwargs["enable_thinking"] = self.thinking is not None
        self._cue_ids: dict[tuple[str, bool], list[int]] = {}

    # -- rendering

    def _text(self, messages: prompts.Messages) -> str:
        return self.tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True, **self.template_kwargs
        )

    def _no_thinking(self, text: str) -> str:
        """A generation prompt whose answer should not reason: an empty, closed block."""
        fmt = self.thinking
        if fmt is None:
            return text
        if thinking_open(text, fmt):
            return text + f"\n{fmt.close}\n\n"
        if text.rstrip().endswith(fmt.close):
            return text  # the template closed an empty block itself (enable_thinking false)
        return text + f"{fmt.open}\n\n{fmt.close}\n\n"

    def _reasoning_start(self, text: str) -> str:
        """The generation prompt up to where the model's reasoning starts."""
        fmt = self.thinking
        if fmt is None or thinking_open(text, fmt):
            return text
        return text + f"{fmt.open}\n"

    def generation_prompt(self, problem: str, task: str) -> list[int]:
        """The chain-of-thought prompt with the prefill where the reasoning starts."""
        messages = prompts.cot_messages(problem, task)
        if self.thinking is None and not self.template_kwargs:
            return prompts.render(self.tokenizer, messages, prompts.PREFILL)
        text = self._reasoning_start(self._text(messages))
        return encode(self.tokenizer, text + prompts.PREFILL)

    def direct_prompt(self, problem: str, task: str, answer_type: str) -> list[int]:
        """The direct-answer baseline (no chain of thought, no reasoning block)."""
        messages = prompts.direct_messages(problem, task, answer_type)
        if self.thinking is None and not self.template_kwargs:
            return prompts.render(self.tokenizer, messages)
        return encode(self.tokenizer, self._no_thinking(self._text(messages)))

    def followup_prompt(
        self, problem: str, task: str, answer_type: str, response: str, cue: bool = False
    ) -> list[int]:
        """The closed conversation after `response` (the text after the prefill), then the
        follow-up question; with `cue`, the answer turn starts with the answer cue."""
        messages = prompts.elicit_messages(problem, task, answer_type, response)
        suffix = CUES[answer_type] if cue else ""
        if self.thinking is None and not self.template_kwargs:
            return prompts.render(self.tokenizer, messages, suffix)
        # Render with a placeholder for the assistant turn and splice the text the model
        # was given and wrote back in, so that the template cannot drop its reasoning.
        messages[-2] = {"role": "assistant", "content": _SENTINEL}
        rendered = self._text(messages)
        if rendered.count(_SENTINEL) != 1:
            raise ValueError(
                f"model {self.model!r}: its chat template does not render an assistant turn "
                "verbatim, so the follow-up prompt cannot keep the reasoning; set "
                "elicitation: forced"
            )
        head, tail = rendered.split(_SENTINEL)
        generation = self._reasoning_start(self._text(prompts.cot_messages(problem, task)))
        if not generation.startswith(head):
            raise ValueError(
                f"model {self.model!r}: its chat template renders a past assistant turn "
                "differently from its generation prompt; set elicitation: forced"
            )
        turn = generation[len(head) :] + prompts.PREFILL + response
        if thinking_open(turn, self.thinking):
            turn += f"\n{self.thinking.close}\n\n"  # type: ignore[union-attr]
        return encode(self.tokenizer, head + turn + self._no_thinking(tail) + suffix)

    def cue_ids(self, answer_type: str, text_so_far: str) -> list[int]:
        """Token ids appended to a forced prompt: close an open thinking block, then the
        separator and the answer cue."""
        open_ = thinking_open(text_so_far, self.thinking)
        key = (answer_type, open_)
        if key not in self._cue_ids:
            close = f"\n{self.thinking.close}" if open_ else ""  # type: ignore[union-attr]
            self._cue_ids[key] = encode(self.tokenizer, close + CUE_SEPARATOR + CUES[answer_type])
        return self._cue_ids[key]

    def forced_prompt(
        self, prompt_ids: Sequence[int], response_ids: Sequence[int], answer_type: str
    ) -> list[int]:
        """prompt ids + response ids + cue ids: a token-exact extension of the generation
        prompt followed by what the model wrote."""
        ids = [*prompt_ids, *response_ids]
        text = self.tokenizer.decode(ids) if self.thinking is not None else ""
        return ids + self.cue_ids(answer_type, text)

    # -- checks before any engine starts

    def letter_ids(self, n_choices: int) -> list[int]:
        """The token id of each of the first `n_choices` letters, each a single token."""
        out = []
        for letter in LETTERS[:n_choices]:
            ids = encode(self.tokenizer, letter)
            if len(ids) != 1:
                raise ValueError(
                    f"model {self.model!r}: the answer letter {letter!r} is {len(ids)} tokens "
                    "in its vocabulary, so its probability cannot be read from one step; set "
                    "answer_readout: greedy"
                )
            out.append(ids[0])
        return out

    def check(self, answer_types: Sequence[str], max_choices: int) -> None:
        """Refuse, naming the model and the key to set, what this model cannot serve."""
        s = self.settings
        if s.elicitation == "forced" or s.answer_readout == "logprobs":
            for answer_type in answer_types:
                cue = CUES[answer_type]
                if self.tokenizer.decode(encode(self.tokenizer, cue)) != cue:
                    raise ValueError(
                        f"model {self.model!r}: its tokenizer does not round-trip the "
                        f"answer cue {cue!r}; set elicitation: followup"
                    )
        if s.answer_readout == "logprobs" and "multiple_choice" in answer_types:
            self.letter_ids(max_choices)

    # -- readouts

    def answer_text(self, answer_type: str, completion: str) -> str:
        """The graded text of a cued answer: the cue and what the model wrote after it."""
        return CUES[answer_type] + completion


def letter_distribution(
    first_step: Mapping[int, float] | None, letter_ids: Sequence[int]
) -> list[float] | None:
    """Probabilities of the letters (in order) from the first step's log-probabilities,
    renormalised over the valid letters (a letter the backend did not return gets 0); None
    when it returned none of them. (distributions.from_logprobs, over token ids.)"""
    if first_step is None:
        return None
    lps = [first_step.get(t) for t in letter_ids]
    finite = [lp for lp in lps if lp is not None and math.isfinite(lp)]
    if not finite:
        return None
    top = max(finite)
    weights = [math.exp(lp - top) if lp is not None and math.isfinite(lp) else 0.0 for lp in lps]
    total = sum(weights)
    return [w / total for w in weights]


# METHOD.md §2: the research protocol's sampling, for models whose generation_config sets none.
PROTOCOL_SAMPLING = {"temperature": 0.6, "top_p": 0.9}


def generation_config(path: str | None, revision: str | None = None) -> dict[str, Any]:
    """The model's generation_config.json (a local folder, or a hub id in the local cache);
    empty when there is none or `path` is None. Plain JSON: no engine or tokenizer loads."""
    import json
    from pathlib import Path

    if path is None:
        return {}
    local = Path(path) / "generation_config.json"
    if not Path(path).exists():
        from huggingface_hub import try_to_load_from_cache

        try:
            cached = try_to_load_from_cache(path, "generation_config.json", revision=revision)
        except ValueError:  # not a hub id either: nothing to read
            return {}
        local = Path(cached) if isinstance(cached, str) else local
    return json.loads(local.read_text()) if local.is_file() else {}


def model_sampling(
    sampling: Mapping[str, Any], path: str | None, revision: str | None = None
) -> dict[str, float]:
    """`temperature` and `top_p` for a model: the config's where it sets them (not null),
    else the model's generation_config (reasoning models ship the values they were tuned
    for, e.g. 0.6 / 0.95), else the research protocol's (`PROTOCOL_SAMPLING`)."""
    unset = [key for key in PROTOCOL_SAMPLING if sampling.get(key) is None]
    model = generation_config(path, revision) if unset else {}
    return {
        key: float(
            sampling[key]
            if sampling.get(key) is not None
            else model.get(key, PROTOCOL_SAMPLING[key])
        )
        for key in PROTOCOL_SAMPLING
    }


def check_config(config: Mapping[str, Any]) -> None:
    """Readout settings the run cannot honour, refused when the workflow starts.

    A reasoning trace longer than the engine's context would be cut by max_model_len
    without a word (vLLM stops at the context): a `sampling.max_tokens` that does not fit
    under `engine.max_model_len` is refused here, naming both keys. Adaptive sampling reads
    answers in the research protocol's way only, so other readouts are refused with it.
    """
    changed = [
        f"{key}: {config[key]}"
        for key, default in (("elicitation", "followup"), ("answer_readout", "greedy"))
        if config.get(key, default) != default
    ]
    if config.get("sampling_strategy") == "adaptive" and changed:
        raise ValueError(
            f"{' and '.join(changed)} with sampling_strategy 'adaptive': the adaptive driver "
            "reads answers with the follow-up turn and greedy text; use elicitation "
            "'followup' and answer_readout 'greedy' with it, or sampling_strategy 'fixed'"
        )
    sampling = config.get("sampling", {})
    engine = config.get("engine", {})
    most, room = sampling.get("max_tokens"), engine.get("max_model_len")
    chain_of_thought = "chain_of_thought" in config.get("experiments", ["chain_of_thought"])
    if chain_of_thought and most is not None and room is not None and most >= room:
        raise ValueError(
            f"sampling.max_tokens={most} does not fit under engine.max_model_len={room} "
            "with the prompt: responses (reasoning traces above all) would be cut by the "
            "context, not by max_tokens; raise engine.max_model_len above max_tokens plus "
            "the longest prompt (e.g. 40960 for 32768-token traces) or lower max_tokens"
        )
