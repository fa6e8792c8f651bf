"""The sources of likelihood-ratio detection as the config names them (jailbreak and benign
prompt sets), the two roles, and the note of a run whose two roles are one model. Imports
nothing heavy: the workflow reads it when it is parsed."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

SOURCE_KINDS = ("prefill_attack", "benchmark", "hub")


ROLES = ("aligned", "unaligned")


JAILBREAK, BENIGN = "jailbreak", "benign"


DEMONSTRATION_NOTE = (
    "Both roles are the same weights ({path}) in two configurations: this run demonstrates "
    "the mechanism, not a safety result."
)


@dataclass(frozen=True)
class Source:
    """One entry of `likelihood.jailbreaks` or `likelihood.benign` in the config."""

    family: str
    kind: str
    label: str
    n: int | None = None
    dataset: str | None = None  # benchmark: a dataset of the config's `datasets`
    repo: str | None = None  # hub: a dataset id (or a local folder in the same layout)
    config: str | None = None
    split: str = "train"
    revision: str | None = None
    prompt_column: str = "prompt"
    response_column: str | None = None
    chat_pattern: str | None = None  # regex with groups `user` and `prefix` over the prompt

    @classmethod
    def from_config(cls, entry: Mapping[str, Any], label: str) -> Source:
        kind = entry.get("kind")
        if kind not in SOURCE_KINDS:
            raise ValueError(f"likelihood source {entry}: kind must be one of {SOURCE_KINDS}")
        if kind == "prefill_attack" and label != JAILBREAK:
            raise ValueError(f"likelihood source {entry}: a prefill attack is not benign")
        if kind == "benchmark" and not entry.get("dataset"):
            raise ValueError(f"likelihood source {entry}: kind 'benchmark' needs a `dataset`")
        if kind == "hub" and not entry.get("repo"):
            raise ValueError(f"likelihood source {entry}: kind 'hub' needs a `repo`")
        family = entry.get("family") or {"prefill_attack": "prefill"}.get(kind, label)
        fields = {k: v for k, v in entry.items() if k not in ("kind", "family") and v is not None}
        return cls(family=family, kind=kind, label=label, **fields)


def sources_from_config(likelihood: Mapping[str, Any]) -> list[Source]:
    """The configured jailbreak and benign sources; family names must be unique."""
    out = [Source.from_config(e, JAILBREAK) for e in likelihood.get("jailbreaks", [])]
    out += [Source.from_config(e, BENIGN) for e in likelihood.get("benign", [])]
    families = [s.family for s in out]
    if dupes := sorted({f for f in families if families.count(f) > 1}):
        raise ValueError(f"likelihood sources: family names {dupes} are used more than once")
    if not any(s.label == JAILBREAK for s in out) or not any(s.label == BENIGN for s in out):
        raise ValueError("likelihood: configure at least one jailbreak and one benign source")
    return out


def demonstration_note(aligned: Mapping[str, Any], unaligned: Mapping[str, Any]) -> str | None:
    """The note every output of a run whose two roles are one model carries."""
    if aligned["path"] == unaligned["path"] and aligned.get("revision") == unaligned.get(
        "revision"
    ):
        return DEMONSTRATION_NOTE.format(path=aligned["path"])
    return None


def describe_role(role: Mapping[str, Any]) -> str:
    prompt = role.get("system_prompt")
    return f"{role['path']}" + (f" with system prompt {prompt!r}" if prompt else "")
