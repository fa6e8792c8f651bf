"""The `openai` backend: any OpenAI-compatible completions server started by the user.

`vllm serve`, SGLang or a hosted endpoint: prompts go out as token ids, built here with
the model's own tokenizer and chat template exactly as for the in-process backends, so
the three backends send the same requests. vLLM-style servers also take the stop token
ids and return the completion's token ids (`return_token_ids`); a server that does not
gets its text re-tokenized.

Requests run `concurrency` at a time, each retried with exponential backoff on a dropped
connection, a timeout, 429 or a 5xx. A request that still fails ends the batch with a
`PartialBatch` error holding the requests that did finish, which the generator journals
before re-raising, so a rerun only asks for what was lost. The API key is read from the
environment variable the config names, and never logged or written anywhere.
"""

from __future__ import annotations

import logging
import os
import random
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, fields
from typing import Any

from critical_windows.engine.types import Completion, EngineSettings, Sampling, stop_token_ids

log = logging.getLogger(__name__)
logging.getLogger("httpx").setLevel(logging.WARNING)  # not a log line per request


@dataclass(frozen=True)
class ServerSettings:
    """The config's `server` block (see the schema for each key)."""

    url: str = "http://localhost:8000/v1"
    api_key_env: str | None = None
    concurrency: int = 8
    timeout_s: float = 600.0
    max_retries: int = 6
    check: bool = True

    @classmethod
    def from_mapping(cls, block: Mapping[str, Any] | None) -> ServerSettings:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in (block or {}).items() if k in known})

    def api_key(self) -> str:
        """The key from the named environment variable; "EMPTY" when none is named."""
        if self.api_key_env is None:
            return "EMPTY"
        key = os.environ.get(self.api_key_env)
        if not key:
            raise ServerError(
                f"server.api_key_env: environment variable {self.api_key_env} is unset"
            )
        return key


class ServerError(RuntimeError):
    """The server cannot be used: it does not answer, serves another model, or refuses."""


class PartialBatch(RuntimeError):
    """A batch that failed part-way: `done` maps prompt positions to finished completions."""

    def __init__(self, message: str, done: Mapping[int, list[Completion]]):
        super().__init__(message)
        self.done = dict(done)


def served_models(settings: ServerSettings, timeout_s: float = 10.0) -> list[str]:
    """The model ids the server lists at /models; `ServerError` when it does not answer."""
    import openai

    client = openai.OpenAI(
        base_url=settings.url, api_key=settings.api_key(), timeout=timeout_s, max_retries=1
    )
    try:
        return [m.id for m in client.models.list()]
    except openai.APIStatusError as err:
        raise ServerError(
            f"server.url: {settings.url} answered HTTP {err.status_code} to /models"
        ) from None
    except openai.APIError as err:
        raise ServerError(f"server.url: {settings.url} does not answer ({err})") from None


def _retryable(err: Exception) -> bool:
    import openai

    if isinstance(err, openai.APIConnectionError | openai.APITimeoutError):
        return True
    if isinstance(err, openai.APIStatusError):
        return err.status_code == 429 or err.status_code >= 500
    return False


class OpenAIBackend:
    """Completions from an OpenAI-compatible server, with the model's local tokenizer."""

    name = "openai"

    def __init__(
        self,
        model: str,
        settings: EngineSettings,
        revision: str | None = None,
        server: ServerSettings | None = None,
        served_model: str | None = None,
    ):
        import openai
        from transformers import AutoTokenizer

        self.server = server or ServerSettings()
        self.served_model = served_model or model
        self.tokenizer = AutoTokenizer.from_pretrained(model, revision=revision)
        self.max_model_len = settings.max_model_len
        self._stop = stop_token_ids(self.tokenizer, model)
        self._client = openai.OpenAI(
            base_url=self.server.url,
            api_key=self.server.api_key(),
            timeout=self.server.timeout_s,
            max_retries=0,  # retried here, with backoff, per request
        )
        self._openai = openai

    def generate(
        self, prompts: Sequence[Sequence[int]], params: Sequence[Sampling]
    ) -> list[list[Completion]]:
        if len(prompts) != len(params):
            raise ValueError(f"{len(prompts)} prompts but {len(params)} sampling settings")
        done: dict[int, list[Completion]] = {}
        failure: Exception | None = None
        with ThreadPoolExecutor(max_workers=self.server.concurrency) as pool:
            futures = {
                pool.submit(self._request, list(ids), p): i
                for i, (ids, p) in enumerate(zip(prompts, params, strict=True))
            }
            for future in as_completed(futures):
                try:
                    done[futures[future]] = future.result()
                except Exception as err:  # keep the others: they are journaled
                    if failure is None:
                        failure = err
                        for other in futures:
                            other.cancel()
        if failure is not None:
            raise PartialBatch(
                f"{len(prompts) - len(done)} of {len(prompts)} requests to {self.server.url} "
                f"failed: {failure}",
                done,
            ) from failure
        return [done[i] for i in range(len(prompts))]

    def stream(
        self, prompts: Sequence[Sequence[int]], params: Sequence[Sampling], in_flight: int
    ) -> Iterator[Any]:
        """Each request as soon as it finishes (`backends.Finished`), `server.concurrency`
        at a time (the server's own limit, not the engine's `in_flight`), so that the
        generator journals them as they come: a kill loses the requests in flight."""
        from critical_windows.engine.types import Finished

        if len(prompts) != len(params):
            raise ValueError(f"{len(prompts)} prompts but {len(params)} sampling settings")
        with ThreadPoolExecutor(max_workers=self.server.concurrency) as pool:
            futures = {}
            for i, (ids, p) in enumerate(zip(prompts, params, strict=True)):
                usage: dict[str, int] = {}
                futures[pool.submit(self._request, list(ids), p, usage)] = (i, len(ids), usage)
            try:
                for future in as_completed(futures):
                    i, n_prompt, usage = futures[future]
                    try:
                        completions = future.result()
                    except Exception as err:
                        raise PartialBatch(
                            f"a request to {self.server.url} failed: {err}", {}
                        ) from err
                    yield Finished(i, completions, n_prompt, usage.get("cached", 0))
            finally:  # a failure, or the caller stopped: send nothing more
                for other in futures:
                    other.cancel()

    def _request(
        self, prompt: list[int], p: Sampling, usage: dict[str, int] | None = None
    ) -> list[Completion]:
        extra: dict[str, Any] = {
            "stop_token_ids": self._stop,
            "return_token_ids": True,
            "skip_special_tokens": True,
        }
        options: dict[str, Any] = {
            "model": self.served_model,
            "prompt": prompt,
            "n": p.n,
            "temperature": p.temperature,
            "top_p": p.top_p if p.temperature > 0 else 1.0,
            "max_tokens": p.max_tokens,
            "extra_body": extra,
        }
        if p.seed is not None:
            options["seed"] = p.seed
        if p.wants_logprobs:  # ids, not token strings, as keys: "token_id:123"
            options["logprobs"] = p.logprobs if p.logprobs is not None else 0
            extra["return_tokens_as_token_ids"] = True
            if p.logprob_token_ids is not None:
                extra["logprob_token_ids"] = list(p.logprob_token_ids)
        for attempt in range(self.server.max_retries + 1):
            try:
                response = self._client.completions.create(**options)
                break
            except Exception as err:
                if not _retryable(err) or attempt == self.server.max_retries:
                    raise
                wait = min(60.0, 2.0**attempt) * random.uniform(0.5, 1.0)
                log.warning(
                    "request to %s failed (%s); retry %d/%d in %.1f s",
                    self.server.url,
                    type(err).__name__,
                    attempt + 1,
                    self.server.max_retries,
                    wait,
                )
                time.sleep(wait)
        details = getattr(response.usage, "prompt_tokens_details", None)
        if usage is not None:
            usage["cached"] = int(getattr(details, "cached_tokens", None) or 0)
        choices = sorted(response.choices, key=lambda c: c.index)
        if len(choices) != p.n:
            raise ServerError(f"asked for {p.n} completions, the server returned {len(choices)}")
        return [self._completion(c.model_dump()) for c in choices]

    def _completion(self, choice: Mapping[str, Any]) -> Completion:
        """As VLLMBackend's: the response ends before the end-of-turn token."""
        reason = choice.get("finish_reason")
        if reason not in ("stop", "length"):
            raise ServerError(f"generation ended with finish reason {reason!r}")
        text = choice.get("text") or ""
        ids = choice.get("token_ids")
        if ids is None:  # not a vLLM-style server: re-tokenize the text
            ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        ids = tuple(ids)
        if reason == "stop" and ids and ids[-1] in self._stop:
            ids = ids[:-1]
        return Completion(ids, text, reason, _logprobs(choice.get("logprobs"), len(ids)))


def _logprobs(
    block: Mapping[str, Any] | None, n_tokens: int
) -> tuple[dict[int, float], ...] | None:
    """Per generated position, token id -> log-probability, from a completions `logprobs`
    block whose keys are "token_id:<id>" (vLLM's return_tokens_as_token_ids)."""
    if not block or block.get("top_logprobs") is None:
        return None
    steps = []
    for step in list(block["top_logprobs"])[:n_tokens]:
        row = {}
        for token, logprob in (step or {}).items():
            if not token.startswith("token_id:"):
                raise ServerError(
                    f"the server names log-probability tokens as text ({token!r}), not "
                    "as token ids; it does not support return_tokens_as_token_ids"
                )
            row[int(token.removeprefix("token_id:"))] = float(logprob)
        steps.append(row)
    return tuple(steps)
