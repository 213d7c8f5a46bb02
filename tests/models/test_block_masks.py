import itertools

import pytest
import torch
from torch.nn.attention.flex_attention import BlockMask, and_masks, create_block_mask

from hepattn.models import block_masks
from hepattn.models.block_masks import (
    BLOCK,
    dense_block_mask,
    dense_kv_blocks,
    packed_block_maps,
    packed_block_mask,
    window_block_mask,
    window_kv_blocks,
)
from hepattn.models.kernels import ring_allowed

CASES = list(itertools.product([100, 300, 700], [8, 200, 512], [False, True], [0, 3, 130]))


def listed(count: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """(..., nq, nk) True at the key blocks that a (..., nq) count and (..., nq, nk) index table list."""
    nk = indices.shape[-1]
    used = torch.arange(nk) < count.unsqueeze(-1)
    blocks = torch.zeros(*indices.shape[:-1], nk + 1, dtype=torch.bool)
    return blocks.scatter_(-1, torch.where(used, indices.long(), nk), True)[..., :nk]


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
    lists = listed(*window_kv_blocks(n, N, window, wrap, num_global))
    assert not (needed & ~lists).any()
    mask = window_block_mask(rule, n, N, window, wrap, num_global)  # what flex reads: the same lists
    assert torch.equal(mask.to_dense()[:, 0].bool(), lists)


@pytest.mark.parametrize("wrap", [False, True])
def test_block_lists_grow_linearly(wrap):
    """At 64k tokens with a window of 512 a query block lists at most (128 + 512) / 128 + 2 ring blocks
    (and two ring ends when it wraps) of the 512 in a row."""
    N, window = 65_536, 512
    count, indices = window_kv_blocks(torch.tensor([N, 40_000]), N, window, wrap, 0)
    assert count.shape == (2, N // BLOCK)
    assert int(count.max()) <= (BLOCK + window) // BLOCK + 2 + (2 if wrap else 0)
    assert indices.shape == (2, N // BLOCK, N // BLOCK)  # flex's table: one column per key block


def block_structured_mask(g: torch.Generator, B: int, Nq: int, Nk: int) -> torch.Tensor:
    """(B, Nq, Nk) mask whose 128 x 128 tiles are all allowed, all forbidden or mixed, a third each."""
    nq, nk = -(-Nq // BLOCK), -(-Nk // BLOCK)
    kind = (
        torch.randint(0, 3, (B, nq, nk), generator=g).repeat_interleave(BLOCK, 1).repeat_interleave(BLOCK, 2)
    )
    mixed = torch.rand(B, nq * BLOCK, nk * BLOCK, generator=g) < 0.3
    return ((kind == 1) | ((kind == 2) & mixed))[:, :Nq, :Nk]


def test_dense_blocks_are_the_tiles_with_some_and_with_only_allowed_pairs():
    """Full blocks: every pair allowed by the mask and the valid keys, never at a ragged edge; partial:
    the other tiles with an allowed pair of the mask among some valid keys. They hold every block where
    create_block_mask finds an allowed pair and no other, as long as the mask allows no padded key."""
    g = torch.Generator().manual_seed(0)
    B, Nq, Nk = 2, 300, 520
    attn_valid = block_structured_mask(g, B, Nq, Nk)
    kv_valid = torch.arange(Nk) < torch.tensor([[Nk], [333]])  # the second event's keys are padded
    partial_n, partial, full_n, full = dense_kv_blocks(attn_valid, kv_valid)
    listed_partial, listed_full = listed(partial_n, partial), listed(full_n, full)
    nq, nk = partial.shape[1:]
    for b, i, j in itertools.product(range(B), range(nq), range(nk)):
        rows, cols = slice(i * BLOCK, (i + 1) * BLOCK), slice(j * BLOCK, (j + 1) * BLOCK)
        tile, keys = attn_valid[b, rows, cols], kv_valid[b, cols]
        whole = tile.shape == (BLOCK, BLOCK) and bool((tile & keys).all())
        assert listed_full[b, i, j] == whole
        assert listed_partial[b, i, j] == (bool(tile.any()) and bool(keys.any()) and not whole)
    assert listed_full.any() and listed_partial.any() and not (listed_full | listed_partial).all()

    allowed = attn_valid & kv_valid[:, None, :]
    needed = create_block_mask(lambda b, h, q, k: allowed[b, q, k], B, None, Nq, Nk, device="cpu")
    assert not (needed.to_dense()[:, 0].bool() & ~(listed_partial | listed_full)).any()
    partial_n, partial, full_n, full = dense_kv_blocks(allowed)  # the padded keys in the mask itself
    assert torch.equal(needed.to_dense()[:, 0].bool(), listed(partial_n, partial) | listed(full_n, full))


def flex_view(mask: BlockMask, rule: torch.Tensor) -> torch.Tensor:
    """(B, Nq, Nk) what compiled flex attends through ``mask``: the rule's (B, Nq, Nk) values inside the
    partial blocks, every pair of the full blocks, nothing elsewhere. (Eager flex, on CPU, ignores the
    block tables and applies the rule everywhere, so it cannot check them; tests/bench/test_gpu.py
    checks compiled flex itself.)"""
    Nq, Nk = rule.shape[1:]

    def tokens(blocks):  # (B, nq, nk) blocks -> (B, Nq, Nk) pairs
        return blocks.repeat_interleave(BLOCK, 1).repeat_interleave(BLOCK, 2)[:, :Nq, :Nk]

    view = tokens(listed(mask.kv_num_blocks[:, 0], mask.kv_indices[:, 0])) & rule
    if mask.full_kv_num_blocks is not None:
        view |= tokens(listed(mask.full_kv_num_blocks[:, 0], mask.full_kv_indices[:, 0]))
    return view


def test_flex_sees_the_dense_mask_through_its_blocks():
    """Full blocks skip the rule inside flex, so they must be exactly right: what flex attends through the
    block mask is the mask and the valid keys, a query with no allowed key included."""
    g = torch.Generator().manual_seed(1)
    B, Nq, Nk = 2, 260, 400
    attn_valid = block_structured_mask(g, B, Nq, Nk)
    attn_valid[0, 5] = False
    kv_valid = torch.arange(Nk) < torch.tensor([[Nk], [301]])
    allowed = attn_valid & kv_valid[:, None, :]
    rule = and_masks(lambda b, h, qi, kj: attn_valid[b, qi, kj], lambda b, h, qi, kj: kv_valid[b, kj])
    mask = dense_block_mask(rule, attn_valid, kv_valid)
    assert mask.full_kv_num_blocks.sum() > 0
    assert torch.equal(flex_view(mask, allowed), allowed)


PACKED = {  # event lengths packed back to back: long ones, ones shorter than a block, a G + 1 one
    "long": [700, 300, 513],
    "short": [40, 90, 7, 300, 5, 128, 256],
    "tiny": [4, 6, 5, 300],
}


@pytest.mark.parametrize("lengths", PACKED.values(), ids=PACKED.keys())
@pytest.mark.parametrize(
    ("window", "wrap", "num_global"),
    [(None, False, 0), (8, False, 0), (258, False, 0), (258, True, 0), (200, True, 3)],
)
def test_packed_blocks_hold_every_allowed_pair(lengths, window, wrap, num_global):
    """Packed events: the listed blocks are exactly those where create_block_mask finds an allowed pair,
    and without a window the full blocks are exactly create_block_mask's full blocks."""
    cu = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()])
    N = int(cu[-1])
    seg = torch.searchsorted(cu[1:], torch.arange(N), right=True)
    pos, length = torch.arange(N) - cu[seg], cu.diff()[seg]

    def rule(b, h, qi, kj):
        same = seg[qi] == seg[kj]
        if window is None:
            return same
        return same & ring_allowed(pos[qi], pos[kj], length[qi], window, wrap, num_global)

    needed = create_block_mask(rule, 1, None, N, N, device="cpu")
    some, full = packed_block_maps(cu, window, wrap, num_global)
    assert torch.equal(needed.to_dense()[:, 0].bool(), some)
    if window is None:
        assert torch.equal(full, listed(needed.full_kv_num_blocks[:, 0], needed.full_kv_indices[:, 0]))
        assert full.any()
    mask = packed_block_mask(rule, cu, window, wrap, num_global)  # what flex reads: the same lists
    assert torch.equal(mask.to_dense()[:, 0].bool(), some)


@pytest.mark.parametrize(("window", "wrap", "num_global"), [(None, False, 0), (258, True, 0), (200, True, 3)])
def test_flex_sees_the_packed_events_through_their_blocks(window, wrap, num_global):
    """What flex attends through the packed events' block mask is each event's own (windowed) tokens."""
    lengths = [300, 40, 90, 7, 270]
    cu = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()])
    N = int(cu[-1])
    seg = torch.searchsorted(cu[1:], torch.arange(N), right=True)
    pos, length = torch.arange(N) - cu[seg], cu.diff()[seg]
    allowed = seg[:, None] == seg[None, :]
    if window is not None:
        allowed &= ring_allowed(pos[:, None], pos[None, :], length[:, None], window, wrap, num_global)
    mask = packed_block_mask(lambda b, h, qi, kj: allowed[qi, kj], cu, window, wrap, num_global)
    assert torch.equal(flex_view(mask, allowed[None]), allowed[None])


def test_packed_block_maps_grow_as_blocks_squared_not_tokens():
    """64 packed events of 1,000 tokens with a window of 512: at most (128 + 512) / 128 + 2 key blocks per
    query block (+1 where it crosses into the next event), built from (N / 128)^2 block pairs."""
    cu = torch.arange(65) * 1000
    some, _ = packed_block_maps(cu, 512, False, 0)
    assert some.shape == (1, 500, 500)
    assert int(some.sum(-1).max()) <= (BLOCK + 512) // BLOCK + 3


def test_packed_block_maps_in_chunks_of_query_blocks_equal_all_at_once(monkeypatch):
    """The block pairs are worked out a few query blocks at a time (bounded temporaries at large N)."""
    cu = torch.tensor([0, 600, 640, 730, 737, 1437, 1737])
    for window, wrap, num_global in [(None, False, 0), (258, True, 2)]:
        whole = packed_block_maps(cu, window, wrap, num_global)
        monkeypatch.setattr(block_masks, "PAIRS_AT_ONCE", 30)  # 2 of the 14 query blocks at a time
        chunked = packed_block_maps(cu, window, wrap, num_global)
        monkeypatch.undo()
        assert all(torch.equal(a, b) for a, b in zip(whole, chunked, strict=True))
