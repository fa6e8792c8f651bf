"""Plain transformers `generate`: slow, simple, a reference backend."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from critical_windows.engine.types import Completion, EngineSettings, Sampling, stop_token_ids


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
        return [self.sample(ids, p) for ids, p in zip(prompts, params, strict=True)]

    def sample(
        self,
        ids: Sequence[int],
        p: Sampling,
        logits_processor: Any = None,
        stop: Sequence[int] | None = None,
    ) -> list[Completion]:
        """`p.n` completions of one prompt. `logits_processor` (a transformers
        LogitsProcessor) acts on every step before temperature and top-p, as in vLLM;
        `stop` replaces the model's end-of-turn ids."""
        torch = self.torch
        stop = list(self._stop if stop is None else stop)
        processors = None
        if logits_processor is not None:
            from transformers import LogitsProcessorList

            processors = LogitsProcessorList([logits_processor])
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
                eos_token_id=stop,
                pad_token_id=stop[0],
                output_logits=p.wants_logprobs,
                logits_processor=processors,
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
                if t in stop:
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
