"""The fast nucleus mask against the full sort: the same kept set row by row, the same
sampled-token frequencies (chi-square), and seeded engine runs that reproduce."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from critical_windows.engine import nucleus

VOCAB = 49152  # SmolLM2's vocabulary


def _kept(logits: torch.Tensor) -> torch.Tensor:
    return torch.isfinite(logits)


@pytest.mark.parametrize("scale", [0.5, 2.0, 8.0, 30.0])
def test_same_kept_set_as_the_full_sort(scale: float) -> None:
    """Peaked rows (head path), flat rows (the larger head, then the full sort) and rows
    with p = 1 in one batch all keep exactly the tokens the full sort keeps."""
    g = torch.Generator().manual_seed(int(scale * 10))
    logits = torch.randn(24, VOCAB, generator=g) * scale
    p = torch.tensor([0.9, 0.5, 0.99, 1.0, 0.1, 0.95] * 4)
    want = nucleus.full_sort_top_p(logits.clone(), p)
    got = nucleus.top_p_mask(logits.clone(), p)
    cut = p < 1
    assert torch.equal(_kept(got)[cut], _kept(want)[cut]), (_kept(got).sum(1), _kept(want).sum(1))
    # Kept tokens keep their logits: the sampler sees the same values.
    assert torch.equal(got[_kept(got)], logits[_kept(got)])
    # p = 1 keeps everything (the full sort drops only tokens whose probability is 0).
    assert _kept(got)[~cut].all()
    assert (logits[~cut].softmax(-1)[~_kept(want)[~cut]] == 0).all()


def test_every_path_is_taken() -> None:
    """The three paths (small head, larger head, full sort) on rows built for each."""
    head, *_, large = nucleus.HEAD_SIZES
    rows = torch.full((3, VOCAB), -20.0)
    rows[0, :5] = torch.tensor([5.0, 4.0, 3.0, 2.0, 1.0])  # inside the small head
    # Nearly flat (distinct values: ties have no defined order in either implementation).
    rows[1, : head * 4] = torch.linspace(0.0, 0.01, head * 4)  # over 4x the small head
    rows[2, :] = torch.linspace(0.0, 0.01, VOCAB)  # over the vocabulary: the full sort
    p = torch.full((3,), 0.9)
    calls: list[int] = []

    def counting_sort(logits: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        calls.append(logits.shape[0])
        return nucleus.full_sort_top_p(logits, p)

    got = nucleus.top_p_mask(rows.clone(), p, full_sort=counting_sort)
    want = nucleus.full_sort_top_p(rows.clone(), p)
    assert torch.equal(_kept(got), _kept(want))
    assert calls == [1]
    assert _kept(got).sum(1).tolist()[0] == 3  # 5, 4, 3 reach 0.9 of the mass
    assert 0 < _kept(got).sum(1).tolist()[1] <= head * 4 < large


def test_sampled_frequencies_match_the_full_sort() -> None:
    """Chi-square of tokens sampled (Gumbel-max, as vLLM's CPU sampler) from the fast
    mask against the full sort's nucleus probabilities, on a fixed logit vector."""
    g = torch.Generator().manual_seed(7)
    vocab = 8192
    logits = (torch.randn(vocab, generator=g) * 4.0).unsqueeze(0)
    p = torch.tensor([0.9])
    reference = nucleus.full_sort_top_p(logits.clone(), p)
    fast = nucleus.top_p_mask(logits.clone(), p)
    kept = torch.nonzero(_kept(reference)[0]).squeeze(1)
    assert 5 < kept.numel() < 500
    probs = reference[0, kept].softmax(-1)

    n, chunk = 20000, 2000
    tokens = torch.cat(
        [
            (fast - torch.empty(chunk, vocab).exponential_(generator=g).log()).argmax(-1)
            for _ in range(n // chunk)
        ]
    )
    assert _kept(fast)[0, tokens].all(), "sampled a token outside the nucleus"
    index = {int(t): i for i, t in enumerate(kept)}
    counts = torch.bincount(torch.tensor([index[int(t)] for t in tokens]), minlength=len(kept))
    # Pool the rare tokens so that every expected count is at least 5.
    expected = probs * n
    order = torch.argsort(expected, descending=True)
    common = order[expected[order] >= 5]
    rare = order[expected[order] < 5]
    obs, exp = counts[common].double(), expected[common].double()
    if rare.numel():
        obs = torch.cat([obs, counts[rare].sum().double().unsqueeze(0)])
        exp = torch.cat([exp, expected[rare].sum().double().unsqueeze(0)])
    stat = ((obs - exp) ** 2 / exp).sum()
    dof = torch.tensor(float(len(obs) - 1), dtype=torch.float64)
    pvalue = torch.special.gammaincc(dof / 2, stat / 2)  # the chi-square survival function
    assert pvalue > 1e-3, (float(stat), len(obs))


def test_a_wrong_shape_is_refused() -> None:
    with pytest.raises(ValueError, match="top_p_mask"):
        nucleus.top_p_mask(torch.zeros(2, 10), torch.tensor([0.9]))


@pytest.mark.slow
def test_seeded_engine_runs_reproduce(embedded_model: Path) -> None:
    """Through the real engine: the same seeds give the same tokens twice with the fast
    sampler, and the same tokens as vLLM's own top-p (the mask is the same, and the
    CPU sampler's noise depends only on the seed)."""
    from critical_windows.engine.types import EngineSettings, Sampling
    from critical_windows.engine.vllm_backend import VLLMBackend

    backend = VLLMBackend(str(embedded_model), EngineSettings(max_model_len=512))
    assert nucleus.installed()
    tok = backend.tokenizer
    prompts = [
        tok.apply_chat_template(
            [{"role": "user", "content": f"Name {i + 2} animals."}],
            add_generation_prompt=True,
            tokenize=False,
        )
        for i in range(4)
    ]
    ids = [tok(p, add_special_tokens=False)["input_ids"] for p in prompts]
    params = [Sampling(0.8, 0.9, 24, 2, seed=100 + i) for i in range(4)]
    first = backend.generate(ids, params)
    again = backend.generate(ids, params)
    with nucleus.vllm_top_p():
        assert not nucleus.installed()
        theirs = backend.generate(ids, params)
    assert nucleus.installed()
    tokens = [[c.token_ids for c in cs] for cs in first]
    assert tokens == [[c.token_ids for c in cs] for cs in again]
    assert tokens == [[c.token_ids for c in cs] for cs in theirs]
    assert len({t for cs in tokens for t in cs}) > 1  # sampled, not one greedy answer
    # The stages' streamed path: every request once, with all n samples, the same tokens.
    streamed = {
        f.index: [c.token_ids for c in f.completions] for f in backend.stream(ids, params, 2)
    }
    assert [streamed[i] for i in range(len(ids))] == tokens
