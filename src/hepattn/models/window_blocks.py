"""FlexAttention block masks of windowed attention without evaluating the rule on N^2 pairs.

``create_block_mask`` evaluates the mask rule at every (query, key) pair: N^2 work for a window whose
blocks are known in advance. Here each query block lists the key blocks that its queries' windows reach,
computed from a few positions per block instead of N^2 rule calls, and ``BlockMask.from_kv_blocks`` takes
the lists as they are. Block-level tables remain (N / 128)^2 entries (flex's own tables, and the sort of a
row when global tokens are there): 0.26 M at 64k hits.
Every listed block is "partial", so flex still applies the exact rule (``mask_mod``) inside it; the
lists only need to hold every block with an allowed pair, which a test checks against
``create_block_mask``.

Shapes: B batch, N constituents (queries and keys are the same N), G global tokens, nb = ceil(N / 128).
"""

import torch
from torch import Tensor
from torch.nn.attention.flex_attention import BlockMask

BLOCK = 128  # flex's default block size


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
    count, indices = window_kv_blocks(n, N, window, wrap, num_global, block)
    return BlockMask.from_kv_blocks(
        count.unsqueeze(1), indices.unsqueeze(1), BLOCK_SIZE=block, mask_mod=mask_mod, seq_lengths=(N, N)
    )
