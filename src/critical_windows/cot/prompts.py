"""The prompts of METHOD.md §2, rendered through the model's own chat template."""

from __future__ import annotations

from typing import Any

from critical_windows.catalog import PREFILL

SYSTEM = "Produce a correct solution to the following {task} question."
THINK = (
    "Think of the {task} question thoroughly step by step. "
    "Please only respond with the answer after reasoning thoroughly."
)
ELICIT = {
    "multiple_choice": (
        "Given all of the above, what's the single, most likely answer? Your answer should "
        'have the format "The answer is ANSWER", where ANSWER is your answer.'
    ),
    "math": (
        "Given all of the above, what's the single, most likely answer? Simplify it "
        'completely. Your answer should have the format "The answer is $ANSWER$", where '
        "ANSWER is your answer in LaTeX."
    ),
}
DIRECT = {
    "multiple_choice": (
        'Answer with the single, most likely answer only, in the format "The answer is '
        'ANSWER", where ANSWER is your answer.'
    ),
    "math": (
        "Answer with the single, most likely answer only, simplified completely, in the "
        'format "The answer is $ANSWER$", where ANSWER is your answer in LaTeX.'
    ),
}

Messages = list[dict[str, str]]


def cot_messages(problem: str, task: str) -> Messages:
    """System and user turns of the chain-of-thought prompt (step 1)."""
    return [
        {"role": "system", "content": SYSTEM.format(task=task)},
        {"role": "user", "content": f"{problem}\n\n{THINK.format(task=task)}"},
    ]


def elicit_messages(problem: str, task: str, answer_type: str, response: str) -> Messages:
    """The conversation closed after `response` (without the prefill), then the follow-up."""
    return [
        *cot_messages(problem, task),
        {"role": "assistant", "content": PREFILL + response},
        {"role": "user", "content": ELICIT[answer_type]},
    ]


def direct_messages(problem: str, task: str, answer_type: str) -> Messages:
    """The direct-answer baseline: the same question, no chain of thought (step 6)."""
    return [
        {"role": "system", "content": SYSTEM.format(task=task)},
        {"role": "user", "content": f"{problem}\n\n{DIRECT[answer_type]}"},
    ]


def render(tokenizer: Any, messages: Messages, prefill: str = "") -> list[int]:
    """Token ids of `messages` in the model's chat template, opening an assistant turn
    that starts with `prefill`."""
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return list(tokenizer(text + prefill, add_special_tokens=False)["input_ids"])
