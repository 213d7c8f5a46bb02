"""Analytic FLOP and byte counts of one event's forward pass, read off a built ``MaskFormer``.

# N hits, Q queries, T targets, D dim, E mask-embedding dim, W window.

FLOPs are those of the matrix products (2 per multiply-add): every ``nn.Linear``, the attention scores
and weighted sums (4 Nq K D for K keys per query), and the query-hit mask similarity (2 Q N E). Norms,
activations and softmax are left out (a few percent). An attention counts the keys it must see: W + 1
neighbours (+ global tokens) for a window, every key otherwise; a dense kernel with mask attention does
compute every key. Bytes are the traffic of those operations if each reads its operands (weights
included) and writes its result once, at ``element_bytes`` per value; the mask attention adds its (Q, N)
logits read and boolean mask. The time floor of a device is the sum over operations of
max(FLOPs / peak FLOP/s, bytes / bandwidth).
"""

from dataclasses import dataclass

from torch import nn

from hepattn.models.decoder import LearnedQueries, SampledQueries
from hepattn.models.maskformer import MaskFormer
from hepattn.models.tasks.mask import ObjectMaskTask

# H200 SXM datasheet: dense bf16 tensor-core peak and HBM3e bandwidth.
H200 = {"name": "H200", "flops_per_s": 790e12, "bytes_per_s": 4.3e12}


@dataclass
class Count:
    """FLOPs and bytes of some operations, and their roofline time on a device."""

    flops: float = 0.0
    bytes: float = 0.0
    floor_s: float = 0.0

    def __add__(self, other: "Count") -> "Count":
        return Count(self.flops + other.flops, self.bytes + other.bytes, self.floor_s + other.floor_s)

    def __mul__(self, k: float) -> "Count":
        return Count(k * self.flops, k * self.bytes, k * self.floor_s)


def _op(flops: float, nbytes: float, device: dict) -> Count:
    return Count(flops, nbytes, max(flops / device["flops_per_s"], nbytes / device["bytes_per_s"]))


def linears(module: nn.Module, rows: int, s: int, device: dict) -> Count:
    """Every ``nn.Linear`` in ``module`` applied to ``rows`` rows (a module used once per row)."""
    total = Count()
    for lin in (m for m in module.modules() if isinstance(m, nn.Linear)):
        i, o = lin.in_features, lin.out_features
        total += _op(2 * rows * i * o, s * (rows * i + rows * o + i * o), device)
    return total


def attention(nq: int, keys_per_query: float, nk: int, dim: int, s: int, device: dict) -> Count:
    """Fused attention: scores and weighted sum; reads q, k, v once and writes the output."""
    return _op(4 * nq * keys_per_query * dim, s * (2 * nq * dim + 2 * nk * dim), device)


def similarity(nq: int, n: int, e: int, s: int, device: dict) -> Count:
    """Mask logits (Q, N) from (Q, E) and (N, E) embeddings."""
    return _op(2 * nq * n * e, s * (nq * e + n * e + nq * n), device)


def num_queries(model: MaskFormer, n: int) -> int:
    """Queries at inference: one per hit for ``SampledQueries``, else at most ``num_queries``."""
    if isinstance(model.queries, SampledQueries):
        return n
    if isinstance(model.queries, LearnedQueries):
        return model.queries.queries.shape[0]
    return min(model.queries.num_queries, n)


def encoder_count(model: MaskFormer, n: int, s: int, device: dict) -> Count:
    encoder, total = model.encoder, Count()
    g = getattr(encoder.registers, "num", 0)
    for layer in encoder.layers:
        attn, dim = layer.attn, layer.attn.q_proj.in_features
        window = attn.window
        keys = n + g if window is None else min(n, 2 * (window // 2) + 1) + g
        pairs = n * keys + g * (n + g)  # the global tokens see everything
        total += linears(layer, n + g, s, device) + attention(n + g, pairs / (n + g), n + g, dim, s, device)
    return total


def mask_logits_count(
    task: ObjectMaskTask, q: int, n: int, s: int, device: dict, hits_embedded: bool = False
) -> Count:
    """``ObjectMaskTask.mask_logits``: embed the queries (and the hits, unless done), then the similarity."""
    e = task.input_embed.fc2.out_features
    total = linears(task.query_embed, q, s, device) + similarity(q, n, e, s, device)
    return total if hits_embedded else total + linears(task.input_embed, n, s, device)


def decoder_layer_count(layer: nn.Module, q: int, n: int, s: int, device: dict) -> Count:
    cross, dim = layer.cross_attn, layer.cross_attn.q_proj.in_features
    total = linears(cross.q_proj, q, s, device) + linears(cross.out_proj, q, s, device)
    total += linears(cross.kv_proj, n, s, device) + attention(q, n, n, dim, s, device)
    if cross.attn_mask:  # reads the (Q, N) boolean mask
        total += _op(0, q * n, device)
    total += linears(layer.self_attn, q, s, device) + attention(q, q, q, dim, s, device)
    return total + linears(layer.mlp, q, s, device)


def forward_count(
    model: MaskFormer, n: int, element_bytes: int = 2, device: dict = H200, aux_heads: bool = False
) -> dict[str, Count]:
    """Counts of one event of ``n`` hits through ``model``, by component (see the module docstring).

    The object heads run on the last decoder layer, as at inference; ``aux_heads``: on every layer, as
    in training (``MaskFormer.forward``).
    """
    s = element_bytes
    counts = {"input_net": linears(model.input_nets[0], n, s, device)}  # one type: the hits
    counts["encoder"] = encoder_count(model, n, s, device)
    counts["hit_heads"] = sum((linears(t, n, s, device) for t in model.constituent_tasks), Count())
    if model.decoder is None:
        return counts
    q = num_queries(model, n)
    decoder, mask_task = model.decoder, model.mask_tasks[0] if model.mask_tasks else None
    counts["queries"] = linears(model.queries, q, s, device)
    layers = [decoder_layer_count(layer, q, n, s, device) for layer in decoder.layers]
    counts["decoder"] = sum(layers, Count())
    depth, reused = len(decoder.layers), mask_task if decoder.mask_attention else None
    if decoder.mask_attention:
        # the hits embedded once; the logits of the initial queries and of every layer's output state,
        # each computed once (they are also the mask task's outputs); each layer reads a boolean mask
        counts["mask_embed_hits"] = linears(mask_task.input_embed, n, s, device)
        logits = mask_logits_count(mask_task, q, n, s, device, hits_embedded=True)
        counts["mask_logits"] = logits * (depth + 1)
        counts["mask_attention"] = _op(0, s * q * n + q * n, device) * depth
    heads = Count()
    for task in model.object_tasks:
        if isinstance(task, ObjectMaskTask):
            if task is not reused:  # the reused task's logits are counted above
                heads += mask_logits_count(task, q, n, s, device)
            if task.quality_head is not None:
                heads += linears(task.quality_head, q, s, device)
        else:
            heads += linears(task, q, s, device)
    counts["query_heads"] = heads * (depth if aux_heads else 1)
    return counts


def matching_cost_flops(model: MaskFormer, n: int, t: int) -> float:
    """FLOPs of the mask matching costs of one training step: 2 Q T N per mask cost per decoder layer.

    The BCE and dice costs are each one (Q, N) x (N, T) product (see ``models.losses``).
    """
    if model.decoder is None or not model.mask_tasks:
        return 0.0
    q = num_queries(model, n)
    costs = sum(1 for w in model.mask_tasks[0].cost_weights.values() if w)
    return len(model.decoder.layers) * costs * 2 * q * t * n


def total(counts: dict[str, Count]) -> Count:
    return sum(counts.values(), Count())
