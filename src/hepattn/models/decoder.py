"""Object-query decoder with mask attention.

# B batch, N constituents, Q queries, D dim.
"""

from collections.abc import Callable

import torch
from torch import Tensor, nn

from hepattn.models.attention import Attention
from hepattn.models.layers import NormPlacement, feed_forward, layer_scale, norm_or_identity, norm_recipe

MaskFn = Callable[[Tensor], Tensor]  # queries (B, Q, D) -> their mask logits over the constituents (B, Q, N)


class DecoderLayer(nn.Module):
    """Cross-attention from queries to constituents, query self-attention, then a feed-forward block."""

    def __init__(
        self,
        dim: int,
        num_heads: int = 8,
        kernel: str = "torch",
        norm: NormPlacement = "pre",
        qk_norm: bool = False,
        layer_scale_init: float | None = None,
        mlp: str = "swiglu",
        mlp_ratio: float = 4.0,
        mask_attention: bool = True,
    ):
        super().__init__()
        recipe = norm_recipe(norm, qk_norm)
        self.cross_in = norm_or_identity(dim, recipe.attn_in)
        self.cross_attn = Attention(dim, num_heads, kernel, attn_mask=mask_attention, qk_norm=recipe.qk_norm)
        self.cross_scale = layer_scale(dim, layer_scale_init)
        self.cross_out = norm_or_identity(dim, recipe.attn_out)
        self.self_in = norm_or_identity(dim, recipe.attn_in)
        self.self_attn = Attention(dim, num_heads, kernel, qk_norm=recipe.qk_norm)
        self.self_scale = layer_scale(dim, layer_scale_init)
        self.self_out = norm_or_identity(dim, recipe.attn_out)
        self.mlp_in = norm_or_identity(dim, recipe.mlp_in)
        self.mlp = feed_forward(mlp, dim, mlp_ratio)
        self.mlp_scale = layer_scale(dim, layer_scale_init)
        self.mlp_out = norm_or_identity(dim, recipe.mlp_out)

    def forward(self, q: Tensor, x: Tensor, x_valid=None, q_valid=None, attn_valid=None) -> Tensor:
        a, _ = self.cross_attn(self.cross_in(q), x, kv_valid=x_valid, attn_valid=attn_valid)
        q = self.cross_out(q + self.cross_scale(a))
        s, _ = self.self_attn(self.self_in(q), x_valid=q_valid)
        q = self.self_out(q + self.self_scale(s))
        return self.mlp_out(q + self.mlp_scale(self.mlp(self.mlp_in(q))))


def attention_mask(mask_logits: Tensor, x_valid: Tensor | None) -> Tensor:
    """Mask attention (Mask2Former, arXiv 2112.01527): what each query may attend to.

    A query attends only to the constituents its current mask keeps (sigmoid > 0.5); a query whose
    kept set is empty attends to all.
    """
    keep = mask_logits.detach() > 0
    if x_valid is not None:
        keep = keep & x_valid.unsqueeze(1)
    return keep | ~keep.any(dim=-1, keepdim=True)


class Decoder(nn.Module):
    """A stack of ``DecoderLayer``; returns the query state after every layer."""

    def __init__(
        self,
        dim: int,
        depth: int,
        num_heads: int = 8,
        kernel: str = "torch",
        norm: NormPlacement = "pre",
        qk_norm: bool = False,
        layer_scale_init: float | None = None,
        mlp: str = "swiglu",
        mlp_ratio: float = 4.0,
        mask_attention: bool = True,
    ):
        """Build the decoder.

        Args:
            dim: embedding size D (the model width).
            depth: number of layers; each layer's query state feeds the object tasks.
            num_heads: attention heads H.
            kernel: attention kernel of the cross- and self-attention ("torch", "flex", "flash").
            norm: "pre", "post" or "hybrid" placement of the LayerNorms (see ``layers.norm_recipe``).
            qk_norm: normalise queries and keys before the dot product.
            layer_scale_init: initial LayerScale of each residual branch (None: none).
            mlp: feed-forward block: "swiglu" or "gelu".
            mlp_ratio: hidden size of the feed-forward block over D.
            mask_attention: each query attends only to the constituents its current mask keeps
                (Mask2Former, arXiv 2112.01527); needs an object mask task.
        """
        super().__init__()
        self.dim = dim
        self.mask_attention = mask_attention
        self.layers = nn.ModuleList(
            DecoderLayer(
                dim, num_heads, kernel, norm, qk_norm, layer_scale_init, mlp, mlp_ratio, mask_attention
            )
            for _ in range(depth)
        )
        self.out_norm = norm_or_identity(dim, norm_recipe(norm, qk_norm).final)

    def forward(
        self, q: Tensor, x: Tensor, x_valid=None, q_valid=None, mask_fn: MaskFn | None = None
    ) -> list[tuple[Tensor, Tensor | None]]:
        """Run the queries through every layer.

        With mask attention, layer i + 1 attends where the mask logits of layer i's output state are
        positive (layer 0: those of the initial queries). The logits of each output state are computed
        once and returned with it, since they are also the mask task's output for that layer.

        Args:
            q: (B, Q, D) initial queries.
            x: (B, N, D) encoded constituents.
            x_valid: (B, N) constituent padding mask.
            q_valid: (B, Q) query padding mask.
            mask_fn: maps queries (B, Q, D) to their mask logits over x (B, Q, N); needed with mask
                attention.

        Returns:
            For each layer, first layer first: the (B, Q, D) query state after it (output-normed) and,
            with mask attention, that state's (B, Q, N) mask logits (else None).
        """
        if self.mask_attention and mask_fn is None:
            raise ValueError("a decoder with mask attention needs a mask_fn (an object mask task)")
        logits = mask_fn(self.out_norm(q)) if self.mask_attention else None
        outputs = []
        for layer in self.layers:
            attn_valid = None if logits is None else attention_mask(logits, x_valid)
            q = layer(q, x, x_valid, q_valid, attn_valid)
            state = self.out_norm(q)
            logits = mask_fn(state) if self.mask_attention else None
            outputs.append((state, logits))
        return outputs


class LearnedQueries(nn.Module):
    """A fixed set of Q learned query vectors, the same for every event (DETR)."""

    def __init__(self, num_queries: int, dim: int):
        """Build the query maker.

        Args:
            num_queries: Q, the most objects an event can have.
            dim: embedding size D.
        """
        super().__init__()
        self.queries = nn.Parameter(torch.randn(num_queries, dim) * 0.02)

    def forward(
        self, x: Tensor, x_valid=None, encoder_outputs=None, batch=None
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        """Returns queries (B, Q, D), query_valid (B, Q) and no constituent index."""
        q = self.queries.to(x.dtype).expand(x.shape[0], -1, -1)
        return q, torch.ones(q.shape[:2], dtype=torch.bool, device=x.device), None


def first_true(flags: Tensor) -> Tensor:
    """(B, K) positions of the True entries of each row of ``flags`` (B, N), in order, K the most in a row.

    Shorter rows are padded with positions of False entries (at least one column, even with no True).
    """
    k = max(int(flags.sum(-1).max()), 1)
    return (~flags).to(torch.uint8).argsort(dim=-1, stable=True)[:, :k]


def seed_projection(dim: int, identity_init: bool) -> nn.Linear:
    """The (D, D) map from a seed constituent's embedding to its query, optionally the identity."""
    proj = nn.Linear(dim, dim)
    if identity_init:
        nn.init.eye_(proj.weight)
        nn.init.zeros_(proj.bias)
    return proj


class DynamicQueries(nn.Module):
    """Queries initialised from the Q constituents that an encoder head scores highest as object seeds.

    The seed head is a constituent task (e.g. "is this the first hit of a particle") trained with its
    own loss; its top-Q constituents' embeddings, projected, start the decoder (dynamic queries as in
    arXiv 2606.17631). Events with fewer valid constituents than Q get invalid queries.
    """

    def __init__(
        self,
        num_queries: int,
        dim: int,
        seed_task: str,
        identity_init: bool = False,
        teacher_field: str | None = None,
    ):
        """Build the query maker.

        Args:
            num_queries: Q, the most objects an event can have.
            dim: embedding size D.
            seed_task: name of the constituent task whose logits rank the seeds.
            identity_init: start the projection as the identity, so that a query begins as its seed's
                embedding (with a shared mask embedding its first mask is centred on its seed).
            teacher_field: in training, the constituents flagged by this boolean batch field (the true
                seeds, e.g. "hit_seed") are taken first and the seed head's best fill the rest; in
                evaluation only the seed head chooses. Teacher forcing of queries as in DN-DETR (arXiv
                2203.01305): the decoder learns to follow a seed from the first step instead of waiting
                for the seed head, which a fresh model on thousands of hits does not learn in time.
        """
        super().__init__()
        self.num_queries = num_queries
        self.seed_task = seed_task
        self.teacher_field = teacher_field
        self.proj = seed_projection(dim, identity_init)

    def forward(
        self, x: Tensor, x_valid: Tensor | None, encoder_outputs: dict, batch: dict | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Returns queries (B, Q, D), query_valid (B, Q) and the chosen constituent indices (B, Q)."""
        score = encoder_outputs[self.seed_task]["logit"].detach().float()
        if self.training and self.teacher_field is not None:
            score = score.sigmoid() + batch[self.teacher_field].float()  # true seeds first, then the head's
        if x_valid is not None:
            score = score.masked_fill(~x_valid, float("-inf"))
        k = min(self.num_queries, x.shape[1])
        index = score.topk(k, dim=-1).indices.sort(-1).values  # queries in constituent (e.g. phi) order
        q = self.proj(x.gather(1, index.unsqueeze(-1).expand(-1, -1, x.shape[-1])))
        q_valid = torch.ones_like(index, dtype=torch.bool) if x_valid is None else x_valid.gather(1, index)
        return q, q_valid, index


class SampledQueries(nn.Module):
    """One query per constituent at inference; a random sample of Q constituents in training.

    Each query starts from its seed constituent's embedding (projected). At inference every valid
    constituent seeds a query, so no object lacks a seed and no seed head is needed; duplicates are
    removed afterwards (e.g. by non-maximum suppression on the masks). Training on a uniform sample of
    the same seeds keeps the cost bounded and shows the heads the seeds they will see: seeds on hits of
    no target, which validity must reject, and several seeds per object (``criterion.SeedOwnerCriterion``).
    """

    def __init__(
        self,
        num_queries: int,
        dim: int,
        identity_init: bool = True,
        input_name: str | None = None,
        weight_field: str | None = None,
        seed_field: str | None = None,
    ):
        """Build the query maker.

        Args:
            num_queries: Q, seeds sampled per event in training.
            dim: embedding size D.
            identity_init: start the projection as the identity, so that a query begins as its seed's
                embedding (with a shared mask embedding its first mask is centred on its seed).
            input_name: the constituent type that seeds the queries; None: the model's only type.
            weight_field: a seed-type field of positive sampling weights (e.g. ``hit_seed_weight``): in
                training a constituent is drawn as a seed in proportion to it (without replacement), so
                that rare objects get more queries; None: uniform. Inference is unchanged.
            seed_field: a boolean seed-type field (e.g. ``hit_seed_ok``): at inference only the
                constituents where it is True seed a query, so that Q can be far below N (seeds on the
                hits a filter is sure of, the others still attended to and assigned); None: every
                constituent seeds one. Training is unchanged.
        """
        super().__init__()
        self.input_name = input_name
        self.num_queries = num_queries
        self.weight_field = weight_field
        self.seed_field = seed_field
        self.proj = seed_projection(dim, identity_init)

    def forward(
        self, x: Tensor, x_valid: Tensor | None, encoder_outputs=None, batch=None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Returns queries (B, Q, D), query_valid (B, Q) and the seed constituent indices (B, Q)."""
        valid = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device) if x_valid is None else x_valid
        if self.training:
            index = self.sample(valid, batch).topk(min(self.num_queries, x.shape[1]), dim=-1)
            index = index.indices.sort(-1).values
        elif self.seed_field is None:
            index = torch.arange(x.shape[1], device=x.device).expand(x.shape[0], -1)
        else:
            valid = valid & self.field(batch, self.seed_field).bool()
            index = first_true(valid)
        q = self.proj(x.gather(1, index.unsqueeze(-1).expand(-1, -1, x.shape[-1])))
        return q, valid.gather(1, index), index

    def field(self, batch: dict[str, Tensor] | None, name: str) -> Tensor:
        if batch is None or name not in batch:
            raise KeyError(f"{type(self).__name__} reads '{name}', which the batch lacks")
        return batch[name]

    def sample(self, valid: Tensor, batch: dict[str, Tensor] | None) -> Tensor:
        """(B, N) keys whose Q largest are the sampled seeds; invalid constituents last.

        Weighted sampling without replacement by keys u^(1/w), u uniform (Efraimidis and Spirakis,
        Inf. Process. Lett. 97 (2006) 181), here as log(u) / w; with no weights the keys are u.
        """
        u = torch.rand(valid.shape, device=valid.device)
        if self.weight_field is None:
            return u.masked_fill(~valid, -1.0)
        weight = self.field(batch, self.weight_field).clamp_min(1e-6)
        keys = u.clamp_min(torch.finfo(u.dtype).tiny).log() / weight
        return keys.masked_fill(~valid, -torch.inf)
