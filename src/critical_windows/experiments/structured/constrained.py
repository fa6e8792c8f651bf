"""Constrained generation and exact probabilities for the structured-output experiment.

A small model rarely writes the fill-in-the-blank form on its own (METHOD.md §3), so the
sampler is constrained: every answer is one of the form's strings, the model still picks
each word. The constraint is a *token trie*: the strings' canonical tokenizations (the
tokenizer's own encoding of each answer after the prefill), and at every step only the
tokens that continue one of them are allowed (the end-of-turn tokens once a string is
complete). Inside vLLM it is a per-request logits processor (`TrieLogitsProcessor`), so
the engine's own sampler draws every token; the synthetic form model (`FormModel`)
applies the same mask in its own sampler.

Why a trie and not a regular expression: a grammar (xgrammar, outlines) admits every
tokenization of the allowed text, so the probability of a string would be a sum over all
its tokenizations, each needing its own forward passes. With the trie a string has one
path, and the exact probability that the constrained sampler writes it is

    P(s) = product over the steps of s's path of q(token | path so far),

where q is what the sampler does with the model's next-token distribution: keep the
allowed tokens, divide the logits by the temperature, apply top-p, renormalise. Where
only one token is allowed q is 1; where the strings branch, the allowed tokens are the
first tokens of the options, and their log-probabilities are read off the teacher-forced
passes of the strings that take them. So the 32 strings of five two-option blanks cost
32 forward passes instead of thousands of samples.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

import numpy as np
import polars as pl

from critical_windows.analysis.statistics import wilson
from critical_windows.engine.types import Completion, Sampling
from critical_windows.experiments.structured.forms import (
    Form,
    curve_rows,
    grid_points,
    sample_table,
)
from critical_windows.io import tables

log = logging.getLogger(__name__)

# --- the trie ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Trie:
    """The canonical token paths of every string of a form (the generated part, after the
    prefill), and the end-of-turn ids allowed once a path is complete."""

    choices: tuple[tuple[int, ...], ...]  # option index per blank, one per string
    strings: tuple[str, ...]  # the whole answer (prefill included)
    paths: tuple[tuple[int, ...], ...]
    stop: tuple[int, ...]

    @cached_property
    def allowed(self) -> dict[tuple[int, ...], tuple[int, ...]]:
        """Allowed next tokens after each prefix of a path, in increasing id order."""
        nxt: dict[tuple[int, ...], set[int]] = {}
        for path in self.paths:
            for j in range(len(path)):
                nxt.setdefault(path[:j], set()).add(path[j])
        for path in self.paths:
            nxt[path] = set(self.stop)
        return {k: tuple(sorted(v)) for k, v in nxt.items()}

    @property
    def max_tokens(self) -> int:
        """Tokens of the longest path and its end-of-turn token."""
        return max(map(len, self.paths)) + 1

    def branching(self, path: Sequence[int]) -> int:
        """Steps of `path` where more than one token is allowed."""
        return sum(len(self.allowed[tuple(path[:j])]) > 1 for j in range(len(path)))

    def digest(self) -> str:
        payload = repr((self.paths, self.stop)).encode()
        return hashlib.sha256(payload).hexdigest()[:16]


def build_trie(form: Form, tokenizer: Any, stop: Sequence[int]) -> Trie:
    """The trie of `form` under `tokenizer`; each path must decode to its string exactly."""
    choices, strings, paths = [], [], []
    for c in form.choice_lists():
        text, _ = form.answer(c)
        generated = text[len(form.prefill) :]
        ids = tuple(tokenizer(generated, add_special_tokens=False)["input_ids"])
        decoded = tokenizer.decode(list(ids), skip_special_tokens=True)
        if decoded != generated:
            raise ValueError(
                f"structured: the tokenizer does not round-trip the answer {generated!r} "
                f"(decodes to {decoded!r}); the constrained sampler cannot write it"
            )
        choices.append(tuple(c))
        strings.append(text)
        paths.append(ids)
    for i, a in enumerate(paths):
        for j, b in enumerate(paths):
            if i != j and b[: len(a)] == a:
                raise ValueError(
                    f"structured: the tokens of {strings[i]!r} are a prefix of those of "
                    f"{strings[j]!r}; the end of the first could not be told from the second"
                )
    if not stop:
        raise ValueError("structured: the model has no end-of-turn token to end an answer")
    return Trie(tuple(choices), tuple(strings), tuple(paths), tuple(sorted(set(stop))))


# --- what the sampler does with a next-token distribution ----------------------------------


def renormalise(logits: Sequence[float], temperature: float, top_p: float) -> np.ndarray:
    """Probabilities the sampler gives the allowed tokens with these logits (or log-
    probabilities; only differences matter): greedy at temperature 0 (the first maximum),
    else softmax(logits / temperature) truncated as vLLM's and transformers' top-p do (in
    increasing order of probability, drop tokens while the cumulative sum stays at or
    below 1 - top_p, never the most likely), then renormalised."""
    x = np.asarray(logits, dtype=np.float64)
    out = np.zeros_like(x)
    if temperature <= 0:
        out[int(np.argmax(x))] = 1.0
        return out
    z = x / temperature
    p = np.exp(z - z.max())
    p /= p.sum()
    if top_p < 1:
        order = np.argsort(p, kind="stable")
        drop = np.cumsum(p[order]) <= 1 - top_p
        drop[-1] = False
        p[order[drop]] = 0.0
        p /= p.sum()
    return p


def exact_probabilities(
    trie: Trie, logprobs: Sequence[Sequence[float]], temperature: float, top_p: float
) -> np.ndarray:
    """P(string) under the constrained sampler, from the model's log-probability of every
    token of every path given the path before it (teacher forcing)."""
    at: dict[tuple[tuple[int, ...], int], float] = {}
    for path, lps in zip(trie.paths, logprobs, strict=True):
        if len(lps) < len(path):
            raise ValueError(f"{len(lps)} log-probabilities for a path of {len(path)} tokens")
        for j, token in enumerate(path):
            at.setdefault((path[:j], token), float(lps[j]))
    probs = np.ones(len(trie.paths))
    for i, path in enumerate(trie.paths):
        for j, token in enumerate(path):
            allowed = trie.allowed[path[:j]]
            if len(allowed) > 1:
                q = renormalise([at[(path[:j], a)] for a in allowed], temperature, top_p)
                probs[i] *= q[allowed.index(token)]
    return probs


# --- scoring by teacher forcing -----------------------------------------------------------


def score_paths(
    backend: Any, prompt: Sequence[int], paths: Sequence[Sequence[int]]
) -> list[list[float]]:
    """Log-probability of every token of every path after `prompt` (one forward pass per
    path), raw: before temperature, top-p or any mask."""
    if isinstance(backend, FormModel):
        return [backend.score(prompt, path) for path in paths]
    if hasattr(backend, "llm"):
        return _score_vllm(backend.llm, prompt, paths)
    if hasattr(backend, "model"):
        return _score_transformers(backend, prompt, paths)
    raise TypeError(f"cannot score token paths with the backend {type(backend).__name__}")


def _score_vllm(
    llm: Any, prompt: Sequence[int], paths: Sequence[Sequence[int]]
) -> list[list[float]]:
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    outs = llm.generate(
        [TokensPrompt(prompt_token_ids=[*prompt, *path]) for path in paths],
        SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=0),
        use_tqdm=False,
    )
    scores = []
    for path, out in zip(paths, outs, strict=True):
        lps = out.prompt_logprobs[len(prompt) :]
        scores.append([lp[t].logprob for t, lp in zip(path, lps, strict=True)])
    return scores


def _score_transformers(
    backend: Any, prompt: Sequence[int], paths: Sequence[Sequence[int]]
) -> list[list[float]]:
    """The prompt once, then each path from a copy of its KV cache: the prompt is most
    of every sequence."""
    import copy

    torch = backend.torch
    scores = []
    with torch.inference_mode():
        head = backend.model(torch.tensor([list(prompt)]), use_cache=True, logits_to_keep=1)
        first = torch.log_softmax(head.logits[0, -1].float(), dim=-1)
        for path in paths:
            lps = [float(first[path[0]])]
            if len(path) > 1:
                out = backend.model(
                    torch.tensor([list(path[:-1])]),
                    past_key_values=copy.deepcopy(head.past_key_values),
                    use_cache=True,
                )
                rest = torch.log_softmax(out.logits[0].float(), dim=-1)
                lps += rest[torch.arange(len(path) - 1), torch.tensor(list(path[1:]))].tolist()
            scores.append(lps)
    return scores


# --- constrained sampling ------------------------------------------------------------------

TRIE_ARG = "critical_windows_trie"


def _vllm_trie_processor() -> type:
    """The vLLM logits processor class (built lazily: vLLM is imported only when used)."""
    from vllm.v1.sample.logits_processor import AdapterLogitsProcessor

    class TrieLogitsProcessor(AdapterLogitsProcessor):
        """Per request: only the tokens that continue a path of the request's trie, given
        as ``SamplingParams(extra_args={TRIE_ARG: [paths, stop]})``."""

        _tables: dict[str, dict[tuple[int, ...], Any]] = {}

        def is_argmax_invariant(self) -> bool:
            return False

        def new_req_logits_processor(self, params: Any) -> Any:
            spec = (params.extra_args or {}).get(TRIE_ARG)
            if spec is None:
                return None
            paths, stop = spec
            key = hashlib.sha256(repr(spec).encode()).hexdigest()
            if key not in self._tables:
                import torch

                trie = Trie((), (), tuple(map(tuple, paths)), tuple(stop))
                self._tables[key] = {k: torch.tensor(v) for k, v in trie.allowed.items()}
            table = self._tables[key]

            def constrain(output_ids: list[int], logits: Any) -> Any:
                allowed = table.get(tuple(output_ids))
                if allowed is None:  # cannot happen: every sampled token was allowed
                    raise RuntimeError(f"constrained output left the trie: {output_ids}")
                masked = logits.new_full(logits.shape, float("-inf"))
                masked[allowed] = logits[allowed]
                return masked

            return constrain

    return TrieLogitsProcessor


_PROCESSOR: list[type] = []


def trie_logits_processor() -> type:
    """The one `TrieLogitsProcessor` class (vLLM identifies processors by class)."""
    if not _PROCESSOR:
        _PROCESSOR.append(_vllm_trie_processor())
    return _PROCESSOR[0]


def sample_constrained(
    backend: Any, prompt: Sequence[int], trie: Trie, sampling: Sampling
) -> list[Completion]:
    """`sampling.n` answers drawn by the backend's sampler under the trie constraint."""
    if isinstance(backend, FormModel):
        return backend.sample(prompt, sampling, trie)
    if hasattr(backend, "model"):
        return _sample_transformers(backend, prompt, trie, sampling)
    if not hasattr(backend, "llm"):
        raise TypeError(f"cannot sample under a constraint with {type(backend).__name__}")
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    params = SamplingParams(
        n=sampling.n,
        temperature=sampling.temperature,
        top_p=sampling.top_p if sampling.temperature > 0 else 1.0,
        max_tokens=trie.max_tokens,
        seed=sampling.seed,
        stop_token_ids=list(trie.stop),
        extra_args={TRIE_ARG: [[list(p) for p in trie.paths], list(trie.stop)]},
    )
    (out,) = backend.llm.generate(
        [TokensPrompt(prompt_token_ids=list(prompt))], params, use_tqdm=False
    )
    return [backend._completion(c) for c in out.outputs]


def _sample_transformers(
    backend: Any, prompt: Sequence[int], trie: Trie, p: Sampling
) -> list[Completion]:
    """transformers `generate` with the trie as a logits processor: transformers applies
    it before temperature and top-p, in the order vLLM does."""
    import torch
    from transformers import LogitsProcessor

    allowed = {k: torch.tensor(v) for k, v in trie.allowed.items()}
    start, stop = len(prompt), set(trie.stop)

    class Constrain(LogitsProcessor):
        def __call__(self, input_ids: Any, scores: Any) -> Any:
            masked = torch.full_like(scores, float("-inf"))
            for row, ids in enumerate(input_ids[:, start:].tolist()):
                ok = allowed.get(tuple(ids))
                if ok is None:
                    if not stop.intersection(ids):  # a finished row is padded: leave it
                        raise RuntimeError(f"constrained output left the trie: {ids}")
                    masked[row] = scores[row]
                else:
                    masked[row, ok] = scores[row, ok]
            return masked

    constrained = replace(p, max_tokens=trie.max_tokens)
    return backend.sample(prompt, constrained, logits_processor=Constrain(), stop=trie.stop)


# --- the synthetic form model ---------------------------------------------------------------


def form_tokenizer(form: Form) -> Any:
    """The synthetic model's tokenizer with every space-led word of the form's answers as
    one token (so an answer is a few dozen tokens, as with a real tokenizer)."""
    from critical_windows.engine.synthetic import SyntheticTokenizer

    tokenizer = SyntheticTokenizer()
    words = {" " + w for c in form.choice_lists() for w in re.findall(r" (\S+)", form.answer(c)[0])}
    for w in sorted(words - set(tokenizer.words)):
        tokenizer._word_id[w] = tokenizer.vocab_size
        tokenizer.words.append(w)
        tokenizer.vocab_size += 1
    return tokenizer


@dataclass
class FormModel:
    """A synthetic model that fills one form with known option probabilities.

    Blank `k` takes option `j` with probability ``softmax(theta[k] + bond * [j == c])[j]``,
    where `theta` is drawn from a digest of the blank's text and `c` is the option index
    chosen at the previous blank (so the choices depend on each other, and P(s | prefix)
    moves at every blank). Every token of the answer's canonical path has probability
    ``1 - slip`` in total; the rest goes to ``"("``, which breaks the form, so the
    unconstrained sampler sometimes fails. After a finished answer the model ends its turn
    with probability ``1 - slip``; off the form it stops or slips with even odds.
    """

    form: Form
    slip: float = 0.02
    bond: float = 1.0
    name: str = "synthetic-form"
    max_model_len: int = 1 << 20
    tokenizer: Any = field(default=None)

    def __post_init__(self) -> None:
        if self.tokenizer is None:
            self.tokenizer = form_tokenizer(self.form)
        self.trie = build_trie(self.form, self.tokenizer, [self.tokenizer.eos_token_id])
        self._junk = self.tokenizer.encode("(")[0]

    @cached_property
    def theta(self) -> list[np.ndarray]:
        out = []
        for b in self.form.blanks:
            seed = int(hashlib.sha256(b.line(0).encode()).hexdigest()[:8], 16)
            out.append(np.random.default_rng(seed).normal(0.0, 1.0, len(b.options)))
        return out

    def option_probs(self, k: int, previous: Sequence[int]) -> np.ndarray:
        """The model's probabilities of blank k's options after the earlier choices."""
        theta = self.theta[k].copy()
        if k and previous[k - 1] < len(theta):
            theta[previous[k - 1]] += self.bond
        w = np.exp(theta - theta.max())
        return w / w.sum()

    def closed_form(self, temperature: float, top_p: float) -> dict[str, float]:
        """P(string) under the constrained sampler, from the option probabilities alone
        (no tokens): the product over blanks of the sampler's renormalised choice."""
        out = {}
        for c, s in zip(self.trie.choices, self.trie.strings, strict=True):
            p = 1.0
            for k, ck in enumerate(c):
                p *= renormalise(np.log(self.option_probs(k, c)), temperature, top_p)[ck]
            out[s] = p
        return out

    @cached_property
    def _branch_blank(self) -> dict[tuple[int, ...], int]:
        """The blank decided at each branching node: where its children's strings differ."""
        out = {}
        for node, allowed in self.trie.allowed.items():
            if len(allowed) < 2 or node in self.trie.paths:
                continue
            under = [
                c
                for c, p in zip(self.trie.choices, self.trie.paths, strict=True)
                if p[: len(node)] == node
            ]
            differ = [k for k in range(len(self.form.blanks)) if len({c[k] for c in under}) > 1]
            out[node] = differ[0]
        return out

    def next_logprobs(self, output: Sequence[int]) -> dict[int, float]:
        """The next-token distribution after the generated `output` (tokens absent: -inf)."""
        node = tuple(output)
        allowed = self.trie.allowed.get(node)
        keep = math.log1p(-self.slip)
        junk = math.log(self.slip)
        if allowed is None:
            return {self.tokenizer.eos_token_id: math.log(0.5), self._junk: math.log(0.5)}
        if len(allowed) == 1:
            return {allowed[0]: keep, self._junk: junk}
        k = self._branch_blank[node]
        out = {self._junk: junk}
        for c, path in zip(self.trie.choices, self.trie.paths, strict=True):
            if path[: len(node)] == node:
                token = path[len(node)]
                out[token] = keep + math.log(self.option_probs(k, c)[c[k]])
        return out

    def score(self, prompt: Sequence[int], path: Sequence[int]) -> list[float]:
        return [self.next_logprobs(path[:j]).get(t, -math.inf) for j, t in enumerate(path)]

    def sample(
        self, prompt: Sequence[int], p: Sampling, trie: Trie | None = None
    ) -> list[Completion]:
        """`p.n` answers, constrained to `trie` if given; the sampler masks, tempers, applies
        top-p and draws with a generator seeded by `p.seed`."""
        rng = np.random.default_rng(p.seed)
        completions = []
        for _ in range(p.n):
            out: list[int] = []
            finish = "length"
            limit = trie.max_tokens if trie is not None else p.max_tokens
            while len(out) < limit:
                dist = self.next_logprobs(out)
                if trie is not None:
                    allowed = set(trie.allowed[tuple(out)])
                    dist = {t: v for t, v in dist.items() if t in allowed}
                tokens = sorted(dist)
                q = renormalise([dist[t] for t in tokens], p.temperature, p.top_p)
                t = tokens[int(rng.choice(len(tokens), p=q))]
                if t == self.tokenizer.eos_token_id:
                    finish = "stop"
                    break
                out.append(t)
            completions.append(Completion(tuple(out), self.tokenizer.decode(out), finish))
        return completions

    def generate(
        self, prompts: Sequence[Sequence[int]], params: Sequence[Sampling]
    ) -> list[list[Completion]]:
        """The backend interface: unconstrained sampling."""
        return [self.sample(ids, p) for ids, p in zip(prompts, params, strict=True)]


# --- chi-square agreement ------------------------------------------------------------------


def _upper_gamma(a: float, x: float) -> float:
    """Regularized upper incomplete gamma Q(a, x) (series below a + 1, continued fraction
    above; Numerical Recipes §6.2)."""
    if x <= 0:
        return 1.0
    if x < a + 1:
        term = total = 1.0 / a
        n = a
        for _ in range(10_000):
            n += 1
            term *= x / n
            total += term
            if abs(term) < abs(total) * 1e-15:
                break
        return max(0.0, 1.0 - total * math.exp(-x + a * math.log(x) - math.lgamma(a)))
    tiny = 1e-300
    b = x + 1 - a
    c = 1 / tiny
    d = 1 / b
    h = d
    for i in range(1, 10_000):
        an = -i * (i - a)
        b += 2
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1 / d
        delta = d * c
        h *= delta
        if abs(delta - 1) < 1e-15:
            break
    return math.exp(-x + a * math.log(x) - math.lgamma(a)) * h


def chi_square(
    counts: Sequence[int], probs: Sequence[float], min_expected: float = 5.0
) -> dict[str, float]:
    """Pearson's goodness-of-fit test of `counts` against `probs`. Cells expected below
    `min_expected` are pooled into one (dropped if the pool is still below it, unless a
    sample fell where the probability is 0: then the p-value is 0)."""
    counts_ = np.asarray(counts, dtype=np.float64)
    probs_ = np.asarray(probs, dtype=np.float64)
    n = counts_.sum()
    if n == 0:
        raise ValueError("chi-square test of no samples")
    if (counts_[probs_ <= 0] > 0).any():
        return {"samples": n, "chi2": math.inf, "dof": 0, "p_value": 0.0, "cells": 0}
    expected = n * probs_ / probs_.sum()
    big = expected >= min_expected
    obs = list(counts_[big])
    exp = list(expected[big])
    pooled_e, pooled_o = expected[~big].sum(), counts_[~big].sum()
    if pooled_e >= min_expected or (pooled_e > 0 and len(exp) < 2):
        obs.append(pooled_o)
        exp.append(pooled_e)
    elif pooled_e > 0 and exp:  # fold the small pool into the smallest kept cell
        i = int(np.argmin(exp))
        obs[i] += pooled_o
        exp[i] += pooled_e
    dof = len(exp) - 1
    stat = float(sum((o - e) ** 2 / e for o, e in zip(obs, exp, strict=True)))
    p = _upper_gamma(dof / 2, stat / 2) if dof > 0 else 1.0
    return {"samples": n, "chi2": stat, "dof": dof, "p_value": p, "cells": len(exp)}


# --- tables --------------------------------------------------------------------------------


def exact_table(
    trie: Trie,
    form: Form,
    logprobs: Sequence[Sequence[float]],
    stop_logprobs: Sequence[float],
    temperature: float,
    top_p: float,
) -> pl.DataFrame:
    """The STRUCTURED_EXACT table: every string with its exact probability under the sampler."""
    probs = exact_probabilities(trie, logprobs, temperature, top_p)
    order = sorted(range(len(probs)), key=lambda i: (-probs[i], trie.strings[i]))
    rank = {i: r for r, i in enumerate(order, 1)}
    rows = [
        {
            "rank": rank[i],
            "string": s,
            "choices": [b.options[x] for b, x in zip(form.blanks, c, strict=True)],
            "n_tokens": len(path),
            "branching_tokens": trie.branching(path),
            "p_exact": float(probs[i]),
            "p_model": math.exp(sum(lps[: len(path)]) + stop_lp),
        }
        for i, (c, s, path, lps, stop_lp) in enumerate(
            zip(trie.choices, trie.strings, trie.paths, logprobs, stop_logprobs, strict=True)
        )
    ]
    rows.sort(key=lambda r: r["rank"])
    return tables.frame(rows, tables.STRUCTURED_EXACT)


def exact_curves(
    exact: pl.DataFrame, form: Form, grid_step: float
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(tables.STRUCTURED_EXACT_CURVES, tables.STRUCTURED_EXACT_BLANKS):
    P(s | s[:p]) = P(s) / P(strings sharing s[:p])."""
    k = grid_points(grid_step)
    weights = dict(zip(exact["string"], exact["p_exact"], strict=True))
    ranks = dict(zip(exact["string"], exact["rank"], strict=True))
    curves, blanks = curve_rows(weights, form, k, ranks)
    for row in curves:
        row["p_string"] = row.pop("weight")
        row["p_prefix"] = row.pop("prefix_weight")
    for row in blanks:
        row["p_string"] = row.pop("weight")
    return (
        tables.frame(curves, tables.STRUCTURED_EXACT_CURVES),  # type: ignore[return-value]
        tables.frame(blanks, tables.STRUCTURED_EXACT_BLANKS),  # type: ignore[return-value]
    )


def side_by_side(exact_blanks: pl.DataFrame, sampled_blanks: pl.DataFrame) -> pl.DataFrame:
    """One row per (string, blank): the bounds, and the jump of the exact and of the
    sampled curve with whether it lies inside them."""
    keep = ["jump_lo", "jump_hi", "rise", "inside"]
    sampled = sampled_blanks.select(
        "string",
        "blank",
        pl.col("count").alias("sampled_count"),
        pl.col("alternatives").alias("sampled_alternatives"),
        *[pl.col(c).alias(f"sampled_{c}") for c in keep],
    )
    return (
        exact_blanks.select(
            "rank",
            "string",
            "p_string",
            "blank",
            "option",
            "position",
            "length",
            "t_lower",
            "t_upper",
            pl.col("alternatives").alias("exact_alternatives"),
            *[pl.col(c).alias(f"exact_{c}") for c in keep],
        )
        .join(sampled, on=["string", "blank"], how="left")
        .sort("rank", "blank")
    )


def inside_shares(table: pl.DataFrame) -> pl.DataFrame:
    """Per curve (exact, sampled): blanks with a jump, how many inside the bounds, share."""
    rows = []
    for curve in ("exact", "sampled"):
        col = table[f"{curve}_inside"].drop_nulls()
        rows.append(
            {
                "curve": curve,
                "blanks": table.height,
                "with_jump": col.len(),
                "inside": int(col.sum()),
                "inside_share": float(col.mean()) if col.len() else None,
            }
        )
    return pl.DataFrame(rows)


# --- the stage -----------------------------------------------------------------------------


def load_engine(
    model_path: str,
    revision: str | None,
    backend_name: str,
    engine: Mapping[str, Any],
    form: Form,
) -> Any:
    """The engine of the structured experiment: vLLM with the trie constraint available,
    transformers (unconstrained sampling and scoring only), or for a synthetic model path
    the synthetic form model of `form`."""
    from critical_windows.engine import synthetic
    from critical_windows.engine.registry import load_backend
    from critical_windows.engine.types import EngineSettings
    from critical_windows.engine.vllm_backend import VLLMBackend

    if synthetic.is_synthetic(model_path):
        return FormModel(form)
    settings = EngineSettings(**engine)
    if backend_name == "vllm":
        return VLLMBackend(model_path, settings, revision, [trie_logits_processor()])
    return load_backend(backend_name, model_path, settings, revision)


def stop_ids(backend: Any) -> list[int]:
    """End-of-turn ids of a loaded engine."""
    if isinstance(backend, FormModel):
        return [backend.tokenizer.eos_token_id]
    return list(backend._stop)


def run_exact(
    backend: Any,
    journal: Any,
    form: Form,
    *,
    samples: int,
    samples_per_request: int,
    sampling: Sampling,
    seed: int,
    context: str,
) -> tuple[pl.DataFrame, pl.DataFrame, Trie]:
    """(constrained samples as a STRUCTURED_SAMPLES frame, the STRUCTURED_EXACT table, the trie):
    the 32 strings scored by teacher forcing, then `samples` constrained answers drawn by
    the engine's sampler, journaled request by request."""
    from critical_windows.cot import prompts
    from critical_windows.cot.generation import derive_seed
    from critical_windows.engine.journal import request_key

    tokenizer = backend.tokenizer
    trie = build_trie(form, tokenizer, stop_ids(backend))
    prompt = prompts.render(
        tokenizer, [{"role": "user", "content": form.user_message()}], form.prefill
    )
    eos = tokenizer.eos_token_id if tokenizer.eos_token_id in trie.stop else trie.stop[0]
    scores = score_paths(backend, prompt, [(*p, eos) for p in trie.paths])
    exact = exact_table(
        trie,
        form,
        [s[:-1] for s in scores],
        [s[-1] for s in scores],
        sampling.temperature,
        sampling.top_p,
    )
    log.info("32 strings scored: the exact probabilities sum to %.12f", exact["p_exact"].sum())
    context = f"{context}|trie:{trie.digest()}"
    requests = []
    for i, start in enumerate(range(0, samples, samples_per_request)):
        s = Sampling(
            sampling.temperature,
            sampling.top_p,
            trie.max_tokens,
            min(samples_per_request, samples - start),
            derive_seed(seed, "constrained", i),
        )
        requests.append((request_key(context, prompt, s), s))
    done = journal.load(k for k, _ in requests)
    for key, s in requests:
        if key not in done:
            out = sample_constrained(backend, prompt, trie, s)
            journal.append({key: out})
            done[key] = out
            log.info("%d constrained samples, %d tokens", s.n, sum(len(c.token_ids) for c in out))
    constrained = sample_table(form, [c for key, _ in requests for c in done[key]])
    return constrained, exact, trie


def agreement(constrained: pl.DataFrame, exact: pl.DataFrame) -> dict[str, Any]:
    """Chi-square of the constrained samples' string counts against the exact
    probabilities, and the sum of those probabilities."""
    counts = dict(constrained.filter("conforming")["string"].value_counts().iter_rows())
    test = chi_square([counts.get(s, 0) for s in exact["string"]], exact["p_exact"].to_list())
    return {
        "constrained_samples": constrained.height,
        "constrained_conforming": int(constrained["conforming"].sum()),
        "exact_sum": float(exact["p_exact"].sum()),
        "chi2": test["chi2"],
        "chi2_dof": test["dof"],
        "chi2_p_value": test["p_value"],
        "total_variation": 0.5
        * sum(
            abs(counts.get(s, 0) / max(constrained.height, 1) - p)
            for s, p in zip(exact["string"], exact["p_exact"], strict=True)
        ),
    }


def compare(
    unconstrained: pl.DataFrame,
    constrained: pl.DataFrame,
    exact: pl.DataFrame,
    form: Form,
    grid_step: float,
) -> dict[str, pl.DataFrame]:
    """Everything the estimate rule writes: the sampled (constrained) and exact curves,
    the bounds table side by side, the share of blanks inside their bounds, the
    unconstrained samples' conformance and a one-row summary."""
    from critical_windows.experiments.structured import forms

    ranks = dict(zip(exact["string"], exact["rank"], strict=True))
    curves, sampled_blanks, _ = forms.estimate(constrained, form, grid_step, ranks)
    exact_c, exact_b = exact_curves(exact, form, grid_step)
    bounds = side_by_side(exact_b, sampled_blanks)
    shares = inside_shares(bounds)
    _, _, conformance = forms.estimate(unconstrained, form, grid_step)
    n = unconstrained.height
    broken = n - int(unconstrained["conforming"].sum())
    lo, hi = wilson(broken, n)
    check = agreement(constrained, exact)
    share = dict(zip(shares["curve"], shares["inside_share"], strict=True))
    summary = pl.DataFrame(
        [
            {
                "unconstrained_samples": n,
                "unconstrained_broken": broken,
                "broken_share": broken / n if n else None,
                "broken_share_lo": lo,
                "broken_share_hi": hi,
                "exact_conforming_mass": float(exact["p_model"].sum()),
                **check,
                "exact_inside_share": share["exact"],
                "sampled_inside_share": share["sampled"],
            }
        ]
    )
    return {
        "curves": curves,
        "exact_curves": exact_c,
        "bounds": bounds,
        "inside": shares,
        "conformance": conformance,
        "summary": summary,
    }


# --- the figure ----------------------------------------------------------------------------


def comparison_chart(
    rank: int, curves: pl.DataFrame, exact_curves_: pl.DataFrame, bounds: pl.DataFrame
) -> Any:
    """The exact P(s | s[:p]) of the string of `rank` (black line) over the constrained
    samples' estimate with its 95% Wilson interval (blue), with every blank's window from
    T_lower to T_upper (grey band, labelled with the chosen word)."""
    import altair as alt

    exact = exact_curves_.filter(pl.col("rank") == rank)
    if exact.is_empty():
        return (
            alt.Chart(pl.DataFrame({"text": [f"no string of rank {rank}"]}))
            .mark_text(size=14)
            .encode(text="text:N")
            .properties(width=500, height=60)
        )
    sampled = curves.filter(pl.col("rank") == rank)
    blanks = bounds.filter(pl.col("rank") == rank)
    x = alt.X(
        "grid:Q", title="fraction of the string kept, p / len(s)", scale=alt.Scale(domain=[0, 1])
    )
    y = alt.Y("p_same:Q", title="P(s | s[:p])", scale=alt.Scale(domain=[0, 1.08]))
    spans = (
        alt.Chart(blanks)
        .mark_rect(color="#bbbbbb", opacity=0.35)
        .encode(x="t_lower:Q", x2="t_upper:Q", tooltip=["blank", "option", "t_lower", "t_upper"])
    )
    labels = (
        alt.Chart(
            blanks.with_columns(mid=(pl.col("t_lower") + pl.col("t_upper")) / 2, y=pl.lit(1.05))
        )
        .mark_text(fontSize=10)
        .encode(x="mid:Q", y="y:Q", text="option:N")
    )
    layers = [spans, labels]
    if not sampled.is_empty():
        layers += [
            alt.Chart(sampled)
            .mark_area(color="#457b9d", opacity=0.25, interpolate="step-after")
            .encode(x=x, y="wilson_lo:Q", y2="wilson_hi:Q"),
            alt.Chart(sampled)
            .mark_line(color="#457b9d", interpolate="step-after", strokeDash=[4, 2])
            .encode(
                x=x,
                y=y,
                tooltip=[
                    "grid",
                    "prefix_chars",
                    "count",
                    "n_prefix",
                    "p_same",
                    "wilson_lo",
                    "wilson_hi",
                ],
            ),
        ]
    layers.append(
        alt.Chart(exact)
        .mark_line(color="black", interpolate="step-after")
        .encode(x=x, y=y, tooltip=["grid", "prefix_chars", "p_string", "p_prefix", "p_same"])
    )
    string = exact["string"][0]
    count = int(sampled["count"][0]) if not sampled.is_empty() else 0
    return alt.layer(*layers).properties(
        width=560,
        height=260,
        title=alt.Title(
            f"String #{rank}: exact P = {exact['p_string'][0]:.4f} (black); "
            f"{count} constrained samples (blue, 95% Wilson band)",
            subtitle=[line for line in string.split("\n") if line],
        ),
    )


def render_comparison(
    rank: int,
    curves: pl.DataFrame,
    exact_curves_: pl.DataFrame,
    bounds: pl.DataFrame,
    html: Any,
    png: Any,
    scale: float = 2.0,
) -> None:
    """Write the figure of the string of `rank` as self-contained HTML and as PNG."""
    import io

    from critical_windows.io.atomic import write_atomic

    chart = comparison_chart(rank, curves, exact_curves_, bounds)
    write_atomic(html, chart.to_html(inline=True))
    buffer = io.BytesIO()
    chart.save(buffer, format="png", scale_factor=scale)
    write_atomic(png, buffer.getvalue())
