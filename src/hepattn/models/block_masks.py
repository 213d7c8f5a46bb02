"""FlexAttention block masks built without evaluating the mask rule on every (query, key) pair.

``create_block_mask`` evaluates the rule (``mask_mod``) at every pair to find which 128 x 128 blocks
hold an allowed pair. Two kinds of mask here do not need that:

- Windows (the encoder): each query block lists the key blocks that its queries' windows reach,
  computed from a few positions per block instead of N^2 rule calls. Block-level tables remain
  (N / 128)^2 entries (flex's own tables, and the sort of a row when global tokens are there): 0.26 M
  at 64k hits. Every listed block is "partial", so flex still applies the exact rule inside it; the
  lists only need to hold every block with an allowed pair, which a test checks against
  ``create_block_mask``.
- Dense masks (the decoder's mask attention, whose (B, Q, N) mask exists anyway): one reduction of
  the mask over its blocks gives the blocks with some allowed pair and those with only allowed pairs
  ("full" blocks, where flex skips the rule).

``BlockMask.from_kv_blocks`` takes the lists as they are.

Shapes: B batch, N constituents (queries and keys are the same N), G global tokens, nb = ceil(N / 128);
Nq, Nk queries and keys of a dense mask, nq, nk their block counts.
"""

import torch
from torch import Tensor
from torch.nn.attention.flex_attention import BlockMask

BLOCK = 128  # flex's default block size
PAIRS_AT_ONCE = 2**22  # block pairs that packed_block_maps works out at a time (bounds its temporaries)


def window_kv_blocks(n: Tensor, N: int, window: int, wrap: bool, num_global: int, block: int = BLOCK):
    """(B, nb) number and (B, nb, K) indices of the key blocks each query block may attend.

    The rule is that of ``kernels.ring_allowed``: after G global tokens (which attend and are attended by
    everything), a token attends the ring positions within ``window // 2`` of its own, on a ring of the
    event's ``n - G`` tokens when ``wrap``.

    Args:
        n: (B,) valid tokens of each event (a prefix of the N).
        N: tokens per row, padding included.
        window: a token attends ring positions within ``window // 2``.
        wrap: whether the ring closes (phi wraps around).
        num_global: G global tokens before the ring.
        block: query and key block size.
    """
    B, G, w, dev = len(n), num_global, window // 2, n.device
    nb = -(-N // block)
    start = torch.arange(nb, device=dev) * block - G  # ring position of each block's first query
    lo, hi = start - w, start + block - 1 + w  # (nb,) the block's windows cover ring positions [lo, hi]
    steps = torch.arange((block + 2 * w) // block + 2, device=dev) * block
    ring = torch.minimum(lo.unsqueeze(1) + steps, hi.unsqueeze(1))  # (nb, S) every block of [lo, hi] hit
    m = (n - G).clamp(min=1).view(B, 1, 1)
    ring = ring.expand(B, -1, -1)
    if wrap:
        # [lo, hi] wraps into two pieces; their inner ends (ring positions m - 1 and 0) are added
        wraps = ((lo < 0) | (hi.view(1, nb) >= m.view(B, 1))).unsqueeze(-1)  # (B, nb, 1)
        ends = torch.cat([m - 1, torch.zeros_like(m)], dim=-1).expand(-1, nb, -1)
        ring = torch.cat([ring.remainder(m), torch.where(wraps, ends, ring[..., :1].remainder(m))], dim=-1)
        inside = torch.ones_like(ring, dtype=torch.bool)
    else:  # the part of [lo, hi] on the event's tokens, [max(lo, 0), min(hi, m - 1)], if any
        inside = ((hi >= 0).view(1, nb) & (lo.view(1, nb) < m.view(B, 1))).unsqueeze(-1).expand_as(ring)
        ring = torch.minimum(ring.clamp(min=0), m - 1)
    kv = torch.where(inside, (ring + G) // block, nb)  # nb: no block
    if G:
        global_kv = torch.arange(-(-G // block), device=dev).expand(B, nb, -1)  # every query sees them
        kv = torch.cat([kv, global_kv], dim=-1)
        all_kv = torch.arange(nb, device=dev).expand(B, nb, -1)  # global queries see every key
        has_global = (start < 0).view(1, nb, 1)
        kv = torch.cat([kv, torch.where(has_global, all_kv, nb)], dim=-1)
    kv, _ = kv.sort(dim=-1)
    repeat = torch.cat([torch.zeros_like(kv[..., :1], dtype=torch.bool), kv[..., 1:] == kv[..., :-1]], -1)
    kv, _ = torch.where(repeat, nb, kv).sort(dim=-1)  # unique blocks first, then the "no block" fill
    count = (kv < nb).sum(-1)
    # flex's tables have a column per key block (its transposition reads the width as the block count)
    kv = torch.nn.functional.pad(kv, (0, max(0, nb - kv.shape[-1])), value=nb)[..., :nb]
    return count.int(), kv.clamp(max=nb - 1).int()


@torch.compiler.disable  # built eagerly and handed to the compiled graph, as flex block masks usually are
def window_block_mask(
    mask_mod, n: Tensor, N: int, window: int, wrap: bool, num_global: int, block: int = BLOCK
) -> BlockMask:
    """The BlockMask of a windowed self-attention over N tokens whose exact rule is ``mask_mod``.

    Under torch.compile it runs eagerly (a graph break): inductor failed to lower this builder together
    with a captured mask_mod on CPU (torch 2.13), while each part alone compiled.
    """
    return _from_tables(window_kv_blocks(n, N, window, wrap, num_global, block), mask_mod, (N, N), block)


def _block_table(blocks: Tensor) -> tuple[Tensor, Tensor]:
    """(B, nq) counts and (B, nq, nk) indices of the True entries of a (B, nq, nk) block map, listed first."""
    indices = torch.argsort((~blocks).byte(), dim=-1, stable=True)  # True blocks first, in key order
    return blocks.sum(-1).int(), indices.int()


def _from_tables(tables: tuple, mask_mod, seq_lengths: tuple[int, int], block: int = BLOCK) -> BlockMask:
    """A BlockMask (one head) from (B, nq) partial counts and (B, nq, nk) indices, then full ones if any."""
    return BlockMask.from_kv_blocks(
        *(t.unsqueeze(1) for t in tables), BLOCK_SIZE=block, mask_mod=mask_mod, seq_lengths=seq_lengths
    )


def _key_tiles(mask: Tensor, block: int) -> tuple[Tensor, Tensor]:
    """(..., nk) whether each run of ``block`` keys of a (..., Nk) mask holds some True, and only True.

    Through views: no copy of the mask. A ragged last run is never "only True", so flex applies the rule
    to its padding.
    """
    Nk = mask.shape[-1]
    main = Nk - Nk % block
    runs = mask[..., :main].unflatten(-1, (main // block, block))
    some, full = runs.any(-1), runs.all(-1)
    if main < Nk:
        some = torch.cat([some, mask[..., main:].any(-1, keepdim=True)], dim=-1)
        full = torch.cat([full, torch.zeros_like(full[..., :1])], dim=-1)
    return some, full


def _tiles(mask: Tensor, block: int) -> tuple[Tensor, Tensor]:
    """(B, nq, nk) whether each block x block tile of a (B, Nq, Nk) mask holds some True, and only True."""
    some, full = _key_tiles(mask, block)  # (B, Nq, nk): keys first, the large dimension
    rows = (0, 0, 0, -mask.shape[1] % block)  # ragged rows: padding, so the tile is not "only True"
    some = torch.nn.functional.pad(some, rows).unflatten(1, (-1, block)).any(2)
    full = torch.nn.functional.pad(full, rows).unflatten(1, (-1, block)).all(2)
    return some, full


def dense_kv_blocks(
    attn_valid: Tensor, kv_valid: Tensor | None = None, block: int = BLOCK
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Partial and full key blocks of each query block, for a dense (B, Nq, Nk) mask and (B, Nk) keys.

    A block is full when all its pairs are allowed (by both masks), partial when it has an allowed pair
    of ``attn_valid`` among valid keys but is not full; flex applies the exact rule inside partial
    blocks, which may hold no allowed pair when ``kv_valid`` forbids what ``attn_valid`` allows.

    Returns:
        (B, nq) partial counts, (B, nq, nk) partial indices, (B, nq) full counts, (B, nq, nk) full indices.
    """
    some, full = _tiles(attn_valid, block)
    if kv_valid is not None:
        keys_some, keys_full = _key_tiles(kv_valid, block)  # (B, nk)
        some, full = some & keys_some.unsqueeze(1), full & keys_full.unsqueeze(1)
    return *_block_table(some & ~full), *_block_table(full)


@torch.compiler.disable  # like window_block_mask: built eagerly, then handed to the kernel
def dense_block_mask(mask_mod, attn_valid: Tensor, kv_valid: Tensor | None = None) -> BlockMask:
    """The BlockMask of a dense (B, Nq, Nk) mask and (B, Nk) valid keys, whose exact rule is ``mask_mod``.

    One pass over the mask, instead of ``create_block_mask``'s call of ``mask_mod`` at every pair.
    """
    return _from_tables(dense_kv_blocks(attn_valid, kv_valid), mask_mod, tuple(attn_valid.shape[1:]))


def packed_block_maps(
    cu_seqlens: Tensor, window: int | None, wrap: bool, num_global: int, block: int = BLOCK
) -> tuple[Tensor, Tensor]:
    """(1, nb, nb) blocks with some allowed pair and blocks of only allowed pairs, for packed events.

    The rule: a token attends the tokens of its own event (segment ``s`` spans ``cu_seqlens[s]`` to
    ``cu_seqlens[s + 1]``), within the window of ``kernels.ring_allowed`` when ``window`` is set. Worked
    out per pair of blocks from the one event they share, if any: the closest positions of the two blocks
    in that event decide. (N / 128)^2 work, not N^2, and exact: two blocks that share more than one
    event both hold the boundary between two of them, so they are one block, which holds its tokens'
    attention to themselves. With a window no block is full (flex applies the rule in all of them),
    as for ``window_kv_blocks``.
    """
    cu = cu_seqlens.long()
    N, dev = int(cu[-1]), cu.device
    nb = -(-N // block)
    first = torch.arange(nb, device=dev) * block
    last = torch.clamp(first + block - 1, max=N - 1)
    seg_first = torch.searchsorted(cu[1:], first, right=True)  # event of each block's first token
    seg_last = torch.searchsorted(cu[1:], last, right=True)
    whole = (seg_first == seg_last) & (last - first + 1 == block)  # a complete block inside one event
    keys = (first, last, seg_first, seg_last)
    rows = max(1, PAIRS_AT_ONCE // nb)  # query blocks at a time
    maps = []
    for r in range(0, nb, rows):
        queries = tuple(t[r : r + rows, None] for t in keys)
        some, full = _packed_pairs(
            cu, queries, keys, whole[r : r + rows, None] & whole, window, wrap, num_global
        )
        maps.append((some, full))
    some, full = (torch.cat(m) for m in zip(*maps, strict=True))
    return some.unsqueeze(0), full.unsqueeze(0)


def _packed_pairs(cu: Tensor, queries: tuple, keys: tuple, whole: Tensor, window, wrap, num_global):
    """``packed_block_maps`` for some query blocks: (first, last, seg_first, seg_last) of each, as columns."""
    first, last, seg_first, seg_last = queries
    k_first, k_last, k_seg_first, k_seg_last = keys
    lo = torch.maximum(seg_first, k_seg_first)  # the shared events are lo..hi
    hi = torch.minimum(seg_last, k_seg_last)
    some = lo <= hi
    if window is None:
        return some, some & whole
    s = lo.clamp(max=len(cu) - 2)
    start, end = cu[s], cu[s + 1] - 1
    a1, a2 = first.clamp(min=start) - start, last.clamp(max=end) - start  # positions in event s
    c1, c2 = k_first.clamp(min=start) - start, k_last.clamp(max=end) - start
    gap = torch.clamp(torch.maximum(c1 - a2, a1 - c2), min=0)  # smallest |query - key| position
    if wrap:  # on a ring of length - G: the largest difference, the other way round, may be smaller
        gap = torch.minimum(gap, end + 1 - start - num_global - torch.maximum(a2 - c1, c2 - a1))
    near = (gap <= window // 2) | (a1 < num_global) | (c1 < num_global)
    some = some & ((hi > lo) | near)  # hi > lo: the diagonal block of a boundary
    return some, torch.zeros_like(some)  # with a window no block is full


@torch.compiler.disable  # like window_block_mask: built eagerly, then handed to the kernel
def packed_block_mask(
    mask_mod, cu_seqlens: Tensor, window: int | None, wrap: bool, num_global: int, full: bool = True
) -> BlockMask:
    """The BlockMask of packed events (B = 1) whose exact rule is ``mask_mod``; see ``packed_block_maps``.

    Args:
        mask_mod: the exact rule, applied by flex inside partial blocks.
        cu_seqlens: (S + 1,) offsets of the S events, the last one N.
        window: a token attends ring positions within ``window // 2`` of its own in its event; None: all.
        wrap: whether each event's ring closes.
        num_global: global tokens at the start of each event.
        full: list blocks of only allowed pairs as full (flex skips ``mask_mod`` there); False when
            ``mask_mod`` forbids more than the events and the window do (e.g. padded keys).
    """
    some, whole = packed_block_maps(cu_seqlens, window, wrap, num_global)
    if not full:
        whole = torch.zeros_like(whole)
    N = int(cu_seqlens[-1])
    return _from_tables((*_block_table(some & ~whole), *_block_table(whole)), mask_mod, (N, N))
