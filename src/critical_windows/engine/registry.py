"""The backend a config names, and the tokenizer alone for stages that need no engine."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from critical_windows.engine.transformers_backend import TransformersBackend
from critical_windows.engine.types import Backend, Completion, EngineSettings, Finished, Sampling
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
    if _generic_fast_tokenizer(model):
        # The class AutoTokenizer would pick, without the 4 s of imports (torch,
        # transformers' modelling code) that `AutoTokenizer` costs a stage without engine.
        from transformers import PreTrainedTokenizerFast

        return PreTrainedTokenizerFast.from_pretrained(model, revision=revision)
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model, revision=revision)


GENERIC_TOKENIZER_CLASSES = ("PreTrainedTokenizerFast", "TokenizersBackend")


def _generic_fast_tokenizer(model: str) -> bool:
    """Whether `model` is a local folder whose tokenizer is transformers' generic fast one."""
    config = Path(model) / "tokenizer_config.json"
    if not config.is_file():
        return False
    return json.loads(config.read_text()).get("tokenizer_class") in GENERIC_TOKENIZER_CLASSES


class LazyBackend:
    """A backend that starts its engine at the first request it has to compute: a model
    stage whose requests are all journaled loads the tokenizer alone.

    Its `name` (with the backend's installed version, critical_windows.engine.journal) is
    what journal keys carry, so the engine it starts must have the same name; `start` is
    called at most once.
    """

    def __init__(
        self,
        name: str,
        model: str,
        settings: EngineSettings,
        start: Callable[[], Backend],
        revision: str | None = None,
    ):
        self.name = name
        self.max_model_len = settings.max_model_len
        self.tokenizer = load_tokenizer(model, revision)
        self._start = start
        self._engine: Backend | None = None

    @property
    def started(self) -> bool:
        return self._engine is not None

    @property
    def engine(self) -> Backend:
        if self._engine is None:
            engine = self._start()
            if engine.name != self.name:
                raise RuntimeError(
                    f"backend {self.name!r} started an engine named {engine.name!r}: "
                    "its journal keys would not match"
                )
            self._engine = engine
        return self._engine

    def generate(
        self, prompts: Sequence[Sequence[int]], params: Sequence[Sampling]
    ) -> list[list[Completion]]:
        return self.engine.generate(prompts, params)

    def stream(
        self, prompts: Sequence[Sequence[int]], params: Sequence[Sampling], in_flight: int
    ) -> Iterator[Finished]:
        """The engine's own stream; an engine without one (transformers) computes
        `in_flight` requests at a time and hands each over when its batch is done."""
        engine = self.engine
        own = getattr(engine, "stream", None)
        if own is not None:
            yield from own(prompts, params, in_flight)
            return
        size = max(1, in_flight)
        for start in range(0, len(prompts), size):
            batch = range(start, min(start + size, len(prompts)))
            outs = engine.generate([prompts[i] for i in batch], [params[i] for i in batch])
            for i, out in zip(batch, outs, strict=True):
                yield Finished(i, out, len(prompts[i]), 0)


def lazy_backend(
    name: str,
    model: str,
    settings: EngineSettings,
    revision: str | None = None,
    server: Any = None,
    served_model: str | None = None,
    load: Callable[..., Backend] | None = None,
) -> Backend:
    """`load_backend`'s backend (or `load`'s, same arguments), started only when a request
    has to be computed (LazyBackend). The synthetic model and a server backend start at
    once: they have no engine to load."""
    from critical_windows.engine import synthetic

    load = load or load_backend
    args = (name, model, settings, revision)
    extra = {"server": server, "served_model": served_model}
    if synthetic.is_synthetic(model) or name == "openai":
        return load(*args, **extra)
    return LazyBackend(name, model, settings, lambda: load(*args, **extra), revision)
