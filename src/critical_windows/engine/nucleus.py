"""Exact nucleus (top-p) sampling on CPU without sorting the vocabulary.

vLLM's CPU sampler masks top-p by sorting every row of logits (49k entries for SmolLM2)
at every decoding step: on a 2-core machine that is most of the decode time. The set it
keeps is the shortest run of most probable tokens whose mass reaches `p` (a token is kept
when the mass of the tokens ranked above it is below `p`). That set only ever reaches
into the tail when the head of the distribution is flat, so here each row takes its `k`
largest logits (a partial selection, no full sort), computes their probabilities against
the row's full normaliser, and when their mass reaches `p` the kept set lies inside them:
the mask is exactly vLLM's. Rows whose top `k` do not reach `p` try a larger `k`, and
last vLLM's own full sort, so every row gets the same mask as vLLM's top-p (up to the
order of tied logits, which neither implementation defines, and float rounding of the
cumulative sum at the cut).

`install()` puts `apply_top_k_top_p` in place of the function of that name that vLLM's
CPU sampler calls (vllm.v1.sample.ops.topk_topp_sampler, checked against the version it
was written for); the engine runs in this process (VLLM_ENABLE_V1_MULTIPROCESSING=0), so
the patch reaches it. Nothing changes on GPUs, whose samplers do not sort on the host.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import torch

log = logging.getLogger(__name__)

# Candidate sizes tried in turn before the full sort.
HEAD_SIZES: tuple[int, ...] = (64, 256, 2048)
# The vLLM versions whose CPU sampler calls `apply_top_k_top_p(logits, k, p)` from
# forward_cpu with the masking semantics reproduced here.
SUPPORTED_VLLM = ("0.32.",)

FullSort = Callable[[torch.Tensor, torch.Tensor | None, torch.Tensor | None], torch.Tensor]


def full_sort_top_p(logits: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """vLLM's top-p mask (apply_top_k_top_p_pytorch without top-k), in place: the
    reference the fast path reproduces, and its fallback when vLLM is absent."""
    logits_sort, logits_idx = logits.sort(dim=-1, descending=False)
    probs_sum = logits_sort.softmax(dim=-1).cumsum(dim=-1)
    mask = probs_sum <= 1 - p.unsqueeze(dim=1)
    mask[:, -1] = False
    logits_sort.masked_fill_(mask, -float("inf"))
    return logits.scatter_(dim=-1, index=logits_idx, src=logits_sort)


def top_p_mask(
    logits: torch.Tensor,
    p: torch.Tensor,
    sizes: Sequence[int] = HEAD_SIZES,
    full_sort: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = full_sort_top_p,
) -> torch.Tensor:
    """`logits` with every token outside each row's nucleus set to -inf (in place).

    Rows with p >= 1 are left as they are (vLLM's mask keeps every token of non-zero
    probability there, which samples the same).
    """
    if logits.ndim != 2 or p.shape != logits.shape[:1]:
        raise ValueError(f"top_p_mask: logits {tuple(logits.shape)} and p {tuple(p.shape)}")
    rows = torch.nonzero(p < 1, as_tuple=True)[0]
    n_rows, vocab = logits.shape
    for size in sizes:
        if rows.numel() == 0:
            return logits
        if size >= vocab:
            break
        whole = rows.numel() == n_rows
        sub = logits if whole else logits[rows]
        sub_p = p[rows].to(torch.float32)
        vals, idx = sub.topk(size, dim=-1, sorted=True)
        lse = torch.logsumexp(sub.to(torch.float32), dim=-1, keepdim=True)
        probs = (vals.to(torch.float32) - lse).exp()
        before = probs.cumsum(dim=-1) - probs  # the mass ranked above each token
        keep = before < sub_p.unsqueeze(1)
        keep[:, 0] = True
        # Exact where the head's mass reaches p: the first token outside is not kept.
        ok = probs.sum(dim=-1) >= sub_p
        if whole and bool(ok.all()):
            masked = torch.full_like(logits, -float("inf"))
            return masked.scatter_(1, idx, vals.masked_fill_(~keep, -float("inf")))
        if ok.any():
            masked = torch.full((int(ok.sum()), vocab), -float("inf"), dtype=logits.dtype)
            masked.scatter_(1, idx[ok], vals[ok].masked_fill_(~keep[ok], -float("inf")))
            logits[rows[ok]] = masked
        rows = rows[~ok]
    if rows.numel():
        logits[rows] = full_sort(logits[rows], p[rows])
    return logits


_original: FullSort | None = None


def _vllm_full_sort(logits: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    from vllm.v1.sample.ops import topk_topp_sampler

    return topk_topp_sampler.apply_top_k_top_p_pytorch(logits, None, p, allow_cpu_sync=True)


def apply_top_k_top_p(
    logits: torch.Tensor, k: torch.Tensor | None, p: torch.Tensor | None
) -> torch.Tensor:
    """Drop-in for vLLM's `apply_top_k_top_p`: the fast exact path for top-p alone,
    vLLM's own code whenever top-k is asked for too (this project never sets top-k)."""
    if p is None or k is not None:
        assert _original is not None
        return _original(logits, k, p)
    return top_p_mask(logits, p, full_sort=_vllm_full_sort)


def supported() -> str | None:
    """None when the installed vLLM's CPU sampler can be patched; else why not."""
    try:
        import vllm
        from vllm.platforms import current_platform
        from vllm.v1.sample.ops import topk_topp_sampler
    except ImportError as e:
        return f"vLLM is not importable ({e})"
    if not current_platform.is_cpu():
        return "not a CPU platform (GPU samplers do not sort on the host)"
    version = getattr(vllm, "__version__", "")
    if not version.startswith(SUPPORTED_VLLM):
        return f"vLLM {version} is not one of {SUPPORTED_VLLM} this patch was checked against"
    for name in ("apply_top_k_top_p", "apply_top_k_top_p_pytorch"):
        if not callable(getattr(topk_topp_sampler, name, None)):
            return f"vllm.v1.sample.ops.topk_topp_sampler has no {name}"
    return None


def install() -> bool:
    """Put the fast exact top-p into vLLM's CPU sampler; False (logged) where unsupported."""
    global _original
    why = supported()
    if why is not None:
        log.info("fast nucleus sampling not installed: %s", why)
        return False
    from vllm.v1.sample.ops import topk_topp_sampler

    if topk_topp_sampler.apply_top_k_top_p is not apply_top_k_top_p:
        _original = topk_topp_sampler.apply_top_k_top_p
        topk_topp_sampler.apply_top_k_top_p = apply_top_k_top_p
        log.info("fast exact nucleus sampling installed in vLLM's CPU sampler")
    return True


def uninstall() -> None:
    """Give vLLM its own top-p back (the benchmark compares both in one engine)."""
    global _original
    if _original is None:
        return
    from vllm.v1.sample.ops import topk_topp_sampler

    topk_topp_sampler.apply_top_k_top_p = _original
    _original = None


def installed() -> bool:
    return _original is not None


@contextmanager
def vllm_top_p() -> Iterator[None]:
    """Run vLLM's own top-p within the block, whatever was installed."""
    was = installed()
    uninstall()
    try:
        yield
    finally:
        if was:
            install()
