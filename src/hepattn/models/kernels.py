# B batch, N/Nq/Nk constituents (queries/keys), D dim, H heads, Dh head dim.
"""Attention kernels: f(q, k, v, *, kv_valid, attn_valid, cu_seqlens, window, wrap, num_global, reuse) -> out.

q (B, H, Nq, Dh), k and v (B, H, Nk, Dh), out (B, H, Nq, Dh). Masks arrive as ``*_valid`` (True = may
attend) and are converted here, at the kernel boundary. `Attention` checks the capabilities at build time,
so a kernel may assume it is only given what it supports. Window positions count from token `num_global`
over the n valid constituents of each event (a prefix of the row, or one segment of a packed batch).

``reuse`` is a dict that the caller shares between calls over the same constituents (the layers of one
encoder forward pass): a kernel keeps there what depends only on the positions, the padding and the
window, not on q, k and v (the flex block mask, the local blocks' key indices and mask), so it is built
once per forward pass instead of once per layer. None: build everything on every call.
"""

from functools import cache
from itertools import pairwise

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn.attention.flex_attention import and_masks, create_block_mask, flex_attention

from hepattn.models.block_masks import dense_block_mask, packed_block_mask, window_block_mask

try:
    from flash_attn import flash_attn_varlen_func
except ImportError:
    flash_attn_varlen_func = None

# Queries per block of the torch kernel's local attention: W / 2 within these bounds; a block sees block + W
# keys, so with W = 32 a block of 256 computes 9 times the scores the window needs, one of 32 twice
# (measured on 2 CPU cores: encoder forward + backward at W 32 and 64 takes 25-30% less time than with 256).
LOCAL_BLOCK = 256
MIN_LOCAL_BLOCK = 32


def has_flash_attn() -> bool:
    return flash_attn_varlen_func is not None


def _lengths(kv_valid: Tensor | None, k: Tensor) -> Tensor:
    """Number of valid constituents per event (B,), assuming they are a prefix."""
    if kv_valid is None:
        return torch.full((k.shape[0],), k.shape[2], device=k.device)
    return kv_valid.sum(-1)


def _sdpa(q: Tensor, k: Tensor, v: Tensor, valid: Tensor | None) -> Tensor:
    """SDPA with a bool mask (True = attend, as SDPA reads it); rows with no allowed key give zeros.

    Such rows attend everything and are zeroed afterwards, so no backend can produce NaN values or grads.
    """
    if valid is None:
        return F.scaled_dot_product_attention(q, k, v)
    empty = ~valid.any(-1, keepdim=True)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=valid | empty).masked_fill(empty, 0.0)


def _reused(reuse: dict | None, key: tuple, build):
    """``reuse[key]``, built by ``build()`` on first use; without a ``reuse`` dict, built every time."""
    if reuse is None:
        return build()
    if key not in reuse:
        reuse[key] = build()
    return reuse[key]


def _local_blocks(n: Tensor, B: int, N: int, window: int, wrap: bool, num_global: int, device) -> tuple:
    """Geometry of `_local_sdpa`: block size, block count, each block's key indices and its key mask."""
    G, w = num_global, window // 2
    L = N - G  # ring tokens per row, padding included
    blk = max(1, min(max(MIN_LOCAL_BLOCK, window // 2), LOCAL_BLOCK, L))
    nblk = -(-L // blk)
    span = blk + 2 * w
    m = (n - G).view(B, 1, 1, 1)  # valid ring tokens per event
    qpos = torch.arange(nblk * blk, device=device).view(nblk, blk, 1)  # query ring positions
    kpos = (torch.arange(nblk, device=device) * blk - w).view(nblk, 1, 1) + torch.arange(span, device=device)
    offset = kpos - qpos + w  # (nblk, blk, span) key position relative to the query's window start
    if wrap:
        # d = min(|i - j|, m - |i - j|) <= w  <=>  j == (i - w + offset) mod m for some 0 <= offset <= 2w;
        # keeping only the first m offsets counts each key once even when m <= W.
        allowed = (offset >= 0) & (offset <= torch.clamp(m - 1, max=2 * w))
        idx = kpos.squeeze(1).remainder(m.view(B, 1, 1).clamp(min=1))  # (B, nblk, span)
    else:
        allowed = (offset >= 0) & (offset <= 2 * w) & (kpos >= 0) & (kpos < m)
        idx = kpos.squeeze(1).clamp(0, max(L - 1, 0)).expand(B, -1, -1)
    glob_valid = (torch.arange(G, device=device) < n.view(B, 1)).view(B, 1, 1, G).expand(-1, nblk, blk, -1)
    valid = torch.cat([glob_valid, allowed.expand(B, -1, -1, -1)], dim=-1).flatten(0, 1).unsqueeze(1)
    return blk, nblk, idx, valid


def _local_sdpa(
    q: Tensor, k: Tensor, v: Tensor, n: Tensor, window: int, wrap: bool, num_global: int, reuse: dict | None
) -> Tensor:
    """Blocked local self-attention: O(N (block + W)) memory, never an N x N mask.

    The ring tokens (after the G global ones) are cut into query blocks; each block attends the keys at
    unwrapped ring positions [start - W//2, end + W//2) plus the G global keys, with a (block x span) mask.
    """
    B, _, N, _ = q.shape
    G, dev = num_global, q.device
    key = ("local", B, N, window, wrap, num_global)
    blk, nblk, idx, valid = _reused(reuse, key, lambda: _local_blocks(n, B, N, window, wrap, num_global, dev))
    L = N - G

    def blocks(t: Tensor) -> Tensor:  # gather each block's keys: (B, H, L, Dh) -> (B, nblk, H, G + span, Dh)
        local = t[:, :, G:][torch.arange(B, device=dev).view(B, 1, 1), :, idx].transpose(2, 3)
        return torch.cat([t[:, :, :G].unsqueeze(1).expand(-1, nblk, -1, -1, -1), local], dim=3)

    q_ring = F.pad(q[:, :, G:], (0, 0, 0, nblk * blk - L)).unflatten(2, (nblk, blk)).transpose(1, 2)
    out = _sdpa(q_ring.flatten(0, 1), blocks(k).flatten(0, 1), blocks(v).flatten(0, 1), valid)
    out = out.unflatten(0, (B, nblk)).transpose(1, 2).flatten(2, 3)[:, :, :L]  # (B, H, L, Dh)
    if G == 0:
        return out
    key_valid = (torch.arange(N, device=dev) < n.view(B, 1)).view(B, 1, 1, N)
    return torch.cat([_sdpa(q[:, :, :G], k, v, key_valid), out], dim=2)  # global queries see all keys


def torch_kernel(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    kv_valid: Tensor | None = None,
    attn_valid: Tensor | None = None,
    cu_seqlens: Tensor | None = None,
    window: int | None = None,
    wrap: bool = False,
    num_global: int = 0,
    reuse: dict | None = None,
) -> Tensor:
    """PyTorch SDPA; windows as blocked local attention, packed segments as a loop (fast on CPU)."""
    if cu_seqlens is not None:
        outs = []
        for s, e in pairwise(cu_seqlens.tolist()):
            sub = None if attn_valid is None else attn_valid[:, s:e, s:e]
            qs, ks, vs = q[:, :, s:e], k[:, :, s:e], v[:, :, s:e]
            outs.append(
                torch_kernel(qs, ks, vs, attn_valid=sub, window=window, wrap=wrap, num_global=num_global)
            )
        return torch.cat(outs, dim=2)
    if window is not None:
        return _local_sdpa(q, k, v, _lengths(kv_valid, k), window, wrap, num_global, reuse)
    valid = None if kv_valid is None else kv_valid[:, None, None, :]
    if attn_valid is not None:
        valid = attn_valid[:, None] if valid is None else attn_valid[:, None] & valid
    return _sdpa(q, k, v, valid)


@torch.library.custom_op("hepattn::realize", mutates_args=())
def _realize(t: Tensor) -> Tensor:
    """A copy that inductor keeps as a named buffer instead of fusing it into its consumer."""
    return t.clone()


@_realize.register_fake
def _(t: Tensor) -> Tensor:
    return torch.empty_like(t)


def _realized(mask: Tensor | None) -> Tensor | None:
    """A mask that the flex mask_mod can capture under torch.compile on CPU.

    Inductor's CPU flex template (torch 2.13) cannot take a captured tensor that is an unfused elementwise
    result, such as a gathered kv_valid or a computed attn_valid: it raises NoValidChoicesError.
    """
    return None if mask is None else _realize(mask)


def ring_allowed(pi: Tensor, pj: Tensor, n: Tensor, window: int, wrap: bool, num_global: int) -> Tensor:
    """Window rule at positions pi, pj of an event with n valid constituents, G global tokens first."""
    d = (pi - pj).abs()
    if wrap:
        d = torch.minimum(d, n - num_global - d)
    return (pi < num_global) | (pj < num_global) | (d <= window // 2)


def compiled_flex_on_cpu() -> bool:
    """Whether this CPU gets the compiled flex kernel: only one with AVX-512.

    On an AVX2 CPU (AMD EPYC Milan), torch 2.13's compiled CPU flex_attention gave wrong outputs, even for
    a plain local window, where eager flex agrees with the reference; the AVX-512 CPU we tested on agreed.
    """
    return torch.backends.cpu.get_cpu_capability().startswith("AVX512")


@cache
def _compiled(fn, dynamic: bool):
    return torch.compile(fn, dynamic=dynamic)


def _flex_ops(q: Tensor, window: int | None):
    """create_block_mask and flex_attention: compiled, unless already under a compile or unsupported there.

    Eager, both build the dense (B, H, Nq, Nk) mask and scores: one windowed encoder at 4k hits peaked at
    1.6 GB on CPU, growing as N^2. Compiled, they work block by block. (Outside a compiled graph, windows
    over padded events, mask attention and packed events do not use create_block_mask: `block_masks`
    lists their blocks without calling the rule at every pair.)
    Inductor's CPU template takes no float64 and has no backward, so those inputs (the float64 test
    oracle, CPU training) stay eager, and so does every CPU call on a CPU without AVX-512 (see
    `compiled_flex_on_cpu`). On CPU only windows are compiled, one static shape per length (torch 2.13):
    there the compiled block mask of a (Nq, Nk) attention mask fails to build for some shapes (Nq 500,
    Nk 16k), and eager is only Nq x Nk. On CUDA shapes are dynamic from the start, so that new lengths
    do not recompile and the variants (window, cross, self; with and without gradients) stay within
    dynamo's recompile limit.
    """
    if torch.compiler.is_compiling():  # first: dynamo cannot trace the CPU-capability query below
        return create_block_mask, flex_attention
    cpu = q.device.type == "cpu"
    eager_only = q.dtype == torch.float64 or (cpu and (q.requires_grad or window is None))
    if eager_only or (cpu and not compiled_flex_on_cpu()):
        return create_block_mask, flex_attention
    dynamic = not cpu
    return _compiled(create_block_mask, dynamic), _compiled(flex_attention, dynamic)


def flex_kernel(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    kv_valid: Tensor | None = None,
    attn_valid: Tensor | None = None,
    cu_seqlens: Tensor | None = None,
    window: int | None = None,
    wrap: bool = False,
    num_global: int = 0,
    reuse: dict | None = None,
) -> Tensor:
    """FlexAttention with a BlockMask, through a compiled kernel where it matters (see `_flex_ops`).

    On CPU there is no backward pass. Windows index per-token tables of the position within the event and
    the event length; packed segments also a segment id.
    """
    B, _, Nq, _ = q.shape
    Nk = k.shape[2]
    if q.device.type == "cpu":  # inductor's CPU flex template fails on views of a 2D projection output
        q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
        kv_valid, attn_valid = _realized(kv_valid), _realized(attn_valid)
    mods = []
    if kv_valid is not None:
        mods.append(lambda b, h, qi, kj: kv_valid[b, kj])
    if attn_valid is not None:
        mods.append(lambda b, h, qi, kj: attn_valid[b, qi, kj])
    if cu_seqlens is not None:  # packed: B == 1, one event per segment
        seg = torch.searchsorted(cu_seqlens[1:], torch.arange(Nk, device=q.device), right=True).view(1, Nk)
        pos = torch.arange(Nk, device=q.device).view(1, Nk) - cu_seqlens[seg]
        length = cu_seqlens.diff()[seg]
        mods.append(lambda b, h, qi, kj: seg[b, qi] == seg[b, kj])
    elif window is not None:  # padded rows: one event per row
        pos = torch.arange(Nk, device=q.device).expand(B, -1)
        length = _lengths(kv_valid, k).view(B, 1).expand(-1, Nk)
    if window is not None:
        mods.append(
            lambda b, h, qi, kj: ring_allowed(pos[b, qi], pos[b, kj], length[b, qi], window, wrap, num_global)
        )
    make_block_mask, attend = _flex_ops(q, window)
    if not mods:
        return attend(q, k, v)
    # attn_valid changes from call to call (mask attention): only masks without it are reused. Inside a
    # compiled graph each layer builds its own (reuse through the dict is not tested under torch.compile).
    compiling = torch.compiler.is_compiling()
    if attn_valid is not None or compiling:
        reuse = None
    key = ("flex", B, Nq, Nk, window, wrap, num_global, kv_valid is not None, cu_seqlens is not None)

    def build():
        with torch.no_grad():  # a block mask holds block indices only; one compiled variant for both modes
            if window is not None and cu_seqlens is None and attn_valid is None:  # linear in N
                return window_block_mask(and_masks(*mods), length[:, 0], Nk, window, wrap, num_global)
            if cu_seqlens is not None and attn_valid is None and not compiling:  # (N / 128)^2
                return packed_block_mask(
                    and_masks(*mods), cu_seqlens, window, wrap, num_global, kv_valid is None
                )
            if attn_valid is not None and window is None and cu_seqlens is None and not compiling:
                return dense_block_mask(and_masks(*mods), attn_valid, kv_valid)  # one pass over the mask
            return make_block_mask(and_masks(*mods), B, None, Nq, Nk, device=q.device)

    return attend(q, k, v, block_mask=_reused(reuse, key, build))


def _cumsum0(n: Tensor) -> Tensor:
    """Segment lengths -> int32 offsets (S + 1,), as flash-attn wants them."""
    return F.pad(n.cumsum(0), (1, 0)).int()


def _flash(q: Tensor, k: Tensor, v: Tensor, cu_q: Tensor, cu_k: Tensor, w: int = -1) -> Tensor:
    """flash_attn_varlen_func on packed (total, H, Dh) tokens, window (w, w); -1 = no window."""
    max_q, max_k = int(cu_q.diff().max()), int(cu_k.diff().max())
    return flash_attn_varlen_func(q, k, v, cu_q, cu_k, max_q, max_k, window_size=(w, w))


def _flash_wrap(q: Tensor, k: Tensor, v: Tensor, cu: Tensor, w: int) -> Tensor:
    """Cyclic window: extend each segment circularly by w on both ends, attend with window (w, w), crop.

    Segments with n <= 2w + 1 see every key within the window, so they take plain attention instead: the
    circular extension would show them some keys twice.
    """
    n = cu.diff().long()
    out = torch.zeros_like(q)
    small = n <= 2 * w + 1
    tok_small = torch.repeat_interleave(small, n)
    if small.any():
        cu_small = _cumsum0(n[small])
        out[tok_small] = _flash(q[tok_small], k[tok_small], v[tok_small], cu_small, cu_small)
    if not small.all():
        n_big, start = n[~small], cu.long()[:-1][~small]
        cu_ext = _cumsum0(n_big + 2 * w)
        seg = torch.repeat_interleave(torch.arange(len(n_big), device=q.device), n_big + 2 * w)
        e = torch.arange(len(seg), device=q.device) - cu_ext.long()[seg] - w  # unwrapped position
        src = start[seg] + e.remainder(n_big[seg])
        keep = (e >= 0) & (e < n_big[seg])
        out[src[keep]] = _flash(q[src], k[src], v[src], cu_ext, cu_ext, w)[keep]
    return out


def flash_kernel(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    kv_valid: Tensor | None = None,
    attn_valid: Tensor | None = None,
    cu_seqlens: Tensor | None = None,
    window: int | None = None,
    wrap: bool = False,
    num_global: int = 0,
    reuse: dict | None = None,
) -> Tensor:
    """flash-attn on the unpadded tokens (CUDA, fp16/bf16); no attn_valid, no global tokens."""
    B, H, Nq, Dh = q.shape
    Nk = k.shape[2]
    q, k, v = (t.transpose(1, 2).flatten(0, 1) for t in (q, k, v))  # (B * N, H, Dh)
    q_idx = None
    if cu_seqlens is not None:
        cu_q = cu_k = cu_seqlens.int()
    else:
        if kv_valid is None:
            kv_valid = torch.ones(B, Nk, dtype=torch.bool, device=q.device)
        k_idx = kv_valid.flatten().nonzero().squeeze(1)
        k, v, cu_k = k[k_idx], v[k_idx], _cumsum0(kv_valid.sum(-1))
        if window is None:  # only the keys are padded; every query row is kept
            cu_q = _cumsum0(torch.full((B,), Nq, device=q.device))
        else:  # windows are self-attention: the queries share the key padding
            q_idx, q, cu_q = k_idx, q[k_idx], cu_k
    if window is not None and wrap:
        out = _flash_wrap(q, k, v, cu_q, window // 2)
    else:
        out = _flash(q, k, v, cu_q, cu_k, -1 if window is None else window // 2)
    if q_idx is not None:
        out = out.new_zeros(B * Nq, H, Dh).index_copy(0, q_idx, out)
    return out.unflatten(0, (B, Nq)).transpose(1, 2)
