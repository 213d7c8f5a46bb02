import itertools

import pytest
import torch
from torch.nn.attention.flex_attention import create_block_mask

from hepattn.models.kernels import ring_allowed
from hepattn.models.window_blocks import BLOCK, window_block_mask, window_kv_blocks

CASES = list(itertools.product([100, 300, 700], [8, 200, 512], [False, True], [0, 3, 130]))


@pytest.mark.parametrize(("N", "window", "wrap", "num_global"), [c for c in CASES if c[3] < c[0]])
def test_listed_blocks_hold_every_allowed_pair(N, window, wrap, num_global):
    """Each query block lists every key block in which create_block_mask (N^2 rule calls) finds an
    allowed pair of real tokens; events of several lengths in one batch."""
    # full, half, nearly full, and short events (a few ring tokens; G + 1: a single one)
    n = torch.tensor(
        [N, max(num_global + 1, N // 2), max(num_global + 1, N - 77), num_global + 5, num_global + 1]
    )
    B = len(n)
    pos, length = torch.arange(N).expand(B, -1), n.view(B, 1).expand(-1, N)

    def rule(b, h, qi, kj):
        real = (qi < length[b, qi]) & (kj < length[b, qi])
        return real & ring_allowed(pos[b, qi], pos[b, kj], length[b, qi], window, wrap, num_global)

    needed = create_block_mask(rule, B, None, N, N, device="cpu").to_dense()[:, 0].bool()  # (B, nq, nk)
    count, indices = window_kv_blocks(n, N, window, wrap, num_global)
    listed = torch.zeros_like(needed)
    for b, i in itertools.product(range(B), range(needed.shape[1])):
        listed[b, i, indices[b, i, : count[b, i]].long()] = True
    assert not (needed & ~listed).any()
    mask = window_block_mask(rule, n, N, window, wrap, num_global)  # what flex reads: the same lists
    assert torch.equal(mask.to_dense()[:, 0].bool(), listed)


@pytest.mark.parametrize("wrap", [False, True])
def test_block_lists_grow_linearly(wrap):
    """At 64k tokens with a window of 512 a query block lists at most (128 + 512) / 128 + 2 ring blocks
    (and two ring ends when it wraps) of the 512 in a row."""
    N, window = 65_536, 512
    count, indices = window_kv_blocks(torch.tensor([N, 40_000]), N, window, wrap, 0)
    assert count.shape == (2, N // BLOCK)
    assert int(count.max()) <= (BLOCK + window) // BLOCK + 2 + (2 if wrap else 0)
    assert indices.shape == (2, N // BLOCK, N // BLOCK)  # flex's table: one column per key block
