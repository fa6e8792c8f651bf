"""What every inference backend takes and returns: sampling settings, completions, engine
settings, and the `Backend` interface.

Backends (engine.vllm_backend, engine.transformers_backend, engine.server, engine.synthetic)
take prompts as token ids and return completions as token ids and text, so the stages never
depend on which one runs. Stopping happens at the model's end-of-turn token, read from its
tokenizer and generation config (no hard-coded ids).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

PROJECT_ROOT = Path(__file__).resolve().parents[3]  # src/critical_windows/engine/types.py


@dataclass(frozen=True)
class Sampling:
    """How to sample one prompt. temperature 0 is greedy (then n must be 1)."""

    temperature: float
    top_p: float = 1.0
    max_tokens: int = 256
    n: int = 1
    seed: int | None = None
    # Log-probabilities to return at every generated position: those of the chosen token
    # (`logprobs=0`) and of `logprob_token_ids` (e.g. the answer letters). None: none.
    logprobs: int | None = None
    logprob_token_ids: tuple[int, ...] | None = None

    @property
    def wants_logprobs(self) -> bool:
        return self.logprobs is not None or self.logprob_token_ids is not None


@dataclass(frozen=True)
class Completion:
    token_ids: tuple[int, ...]
    text: str
    finish_reason: str  # "stop": end of turn; "length": cut by max_tokens
    # Per generated position, token id -> log-probability (the chosen token and the
    # requested ones, from the raw logits); None unless the sampling asked for them.
    logprobs: tuple[dict[int, float], ...] | None = None


@dataclass(frozen=True)
class Finished:
    """One request a backend's `stream` has finished: its index among the prompts, its
    completions, and how many of its prompt tokens the prefix cache served."""

    index: int
    completions: list[Completion]
    prompt_tokens: int
    cached_tokens: int


@dataclass(frozen=True)
class EngineSettings:
    """The config's `engine` block."""

    dtype: str = "float32"
    max_model_len: int = 4096
    enforce_eager: bool = True
    tensor_parallel_size: int = 1
    gpu_memory_utilization: float = 0.9
    cpu_kv_cache_gib: float = 2.0
    # CPU threads of the engine; None: OMP_NUM_THREADS (Snakemake sets it to the job's
    # `threads`), else every core this process may run on.
    threads: int | None = None
    # Tokens per KV-cache block on vLLM-CPU, the unit its prefix cache serves (a multiple
    # of 32 there); None: vLLM's own choice (128 on CPU, 16 on GPUs). GPUs keep theirs.
    cpu_block_size: int | None = 32

    def __post_init__(self) -> None:
        size = self.cpu_block_size
        if size is not None and (isinstance(size, bool) or not isinstance(size, int)):
            raise ValueError(f"engine.cpu_block_size: {size!r} is not an integer or null")
        if size is not None and (size < 32 or size % 32):
            raise ValueError(
                f"engine.cpu_block_size: {size} is not a multiple of 32 (vLLM-CPU's "
                "attention kernels work in blocks of 32 tokens)"
            )


class Backend(Protocol):
    name: str
    tokenizer: Any
    max_model_len: int

    def generate(
        self, prompts: Sequence[Sequence[int]], params: Sequence[Sampling]
    ) -> list[list[Completion]]:
        """One list of `n` completions for each prompt, in order."""
        ...


def stop_token_ids(tokenizer: Any, model_path: str) -> list[int]:
    """End-of-turn ids: the tokenizer's eos and those of the generation config."""
    ids = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
    try:
        from transformers import GenerationConfig

        eos = GenerationConfig.from_pretrained(model_path).eos_token_id
    except OSError:  # no generation_config.json
        eos = None
    if isinstance(eos, int):
        ids.add(eos)
    elif eos:
        ids.update(eos)
    if not ids:
        raise ValueError(
            f"model {model_path}: neither tokenizer nor generation config names an eos"
        )
    return sorted(ids)
