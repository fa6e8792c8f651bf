"""The backend a config names, and the tokenizer alone for stages that need no engine."""

from __future__ import annotations

from typing import Any

from critical_windows.engine.transformers_backend import TransformersBackend
from critical_windows.engine.types import Backend, EngineSettings
from critical_windows.engine.vllm_backend import VLLMBackend


def load_backend(
    name: str,
    model: str,
    settings: EngineSettings,
    revision: str | None = None,
    server: Any = None,
    served_model: str | None = None,
) -> Backend:
    """The engine `name` for `model`; the model path "synthetic[:<preset>]" is the
    synthetic model of `critical_windows.engine.synthetic` whatever the backend. "openai" is
    a server the user started (`server`: the config's `server` block;
    critical_windows.engine.server)."""
    from critical_windows.engine import synthetic

    if synthetic.is_synthetic(model):
        return synthetic.load(model, settings)
    if name == "openai":
        from critical_windows.engine.server import OpenAIBackend, ServerSettings

        return OpenAIBackend(
            model, settings, revision, ServerSettings.from_mapping(server), served_model
        )
    if name == "vllm":
        return VLLMBackend(model, settings, revision)
    if name == "transformers":
        return TransformersBackend(model, settings, revision)
    raise ValueError(f"unknown backend {name!r}: expected 'vllm', 'transformers' or 'openai'")


def load_tokenizer(model: str, revision: str | None = None) -> Any:
    """The model's tokenizer alone, for stages that need no engine."""
    from critical_windows.engine import synthetic

    if synthetic.is_synthetic(model):
        return synthetic.SyntheticTokenizer()
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model, revision=revision)
