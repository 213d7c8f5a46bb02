"""The MaskFormer: embed -> encoder -> (queries -> decoder) -> task heads. Returns outputs only.

# B batch, N_t constituents of type t, N joined constituents (all types), Q queries, D dim.
"""

import torch
from torch import Tensor, nn

from hepattn.data.batch import pack, unpack
from hepattn.models.constituents import (
    Layout,
    NoTypeEmbedding,
    TypeEmbedding,
    gather_rows,
    layout,
    restore_order,
)
from hepattn.models.decoder import Decoder, DynamicQueries, LearnedQueries, SampledQueries
from hepattn.models.embed import InputNet
from hepattn.models.encoder import Encoder
from hepattn.models.tasks.base import ConstituentTask, ObjectTask
from hepattn.models.tasks.mask import ObjectMaskTask


class ScaleGradient(nn.Module):
    """Identity in the forward pass; multiplies the gradient flowing back through it by ``scale``."""

    def __init__(self, scale: float):
        super().__init__()
        self.scale = scale

    def forward(self, x: Tensor) -> Tensor:
        return x.detach() + self.scale * (x - x.detach())


class MaskFormer(nn.Module):
    """Set prediction over constituents with one encoder-decoder transformer.

    Without a decoder it is a constituent classifier (e.g. a hit filter). Matching and losses live in
    ``SetCriterion``; turning outputs into predictions is each task's ``predict``. The constituents may
    be of several types (one input network each), joined into one sequence for the encoder and the
    decoder and split back for the tasks (``models.constituents``).
    """

    def __init__(
        self,
        input_nets: list[InputNet],
        encoder: Encoder,
        tasks: list[nn.Module],
        decoder: Decoder | None = None,
        queries: LearnedQueries | DynamicQueries | SampledQueries | None = None,
        sort_field: str | None = "phi",
        joint_sort: bool = False,
        decoder_grad_scale: float = 1.0,
    ):
        """Wire the model.

        Args:
            input_nets: one input network per constituent type; each one's ``input_name`` names the type
                (e.g. "hit"; or "pixel" and "strip"). With several types a learned type embedding is
                added to each type's constituents.
            encoder: encodes the joined constituents (in ``sort_field`` order).
            tasks: ConstituentTasks (on the encoder output) and ObjectTasks (on every decoder layer). A
                task's ``input_name`` names the constituent type it reads (a constituent task) or its mask
                covers (a mask task: at most one per type).
            decoder: the query decoder; None for an encoder-only model.
            queries: makes the initial queries; needed with a decoder.
            sort_field: constituent field the model sorts by (None: keep the input order). The encoder's
                window and the decoder's mask attention both work on the constituents in this order: a
                window is then a neighbourhood (in phi), and a track's hits, near each other in phi, fill
                few blocks of the (Q, N) mask when the queries are in that order too (block-sparse
                kernels skip the empty blocks). The outputs come back in the input order.
            joint_sort: with several types, sort them together by ``sort_field`` (which every type must
                have), so that neighbours of different types meet in a window; False sorts each type
                within its own block, types one after the other.
            decoder_grad_scale: scale of the gradient that the queries, the decoder and the object tasks
                send back into the encoder (1: plain end-to-end training). Below 1 the constituent tasks
                (e.g. the seed head of dynamic queries) shape the encoder, which they cannot do on events
                with thousands of hits while the decoder's much larger gradient flows in.
        """
        super().__init__()
        self.input_names = [net.input_name for net in input_nets]
        if not input_nets or len(set(self.input_names)) != len(self.input_names):
            raise ValueError(f"need one input network per constituent type, got types {self.input_names}")
        dims = {f"input net '{net.input_name}'": net.dim for net in input_nets} | {"encoder": encoder.dim}
        dims |= {} if decoder is None else {"decoder": decoder.dim}
        if len(set(dims.values())) != 1:
            raise ValueError(f"the model's parts must have one width (dim), got {dims}")
        self.input_nets = nn.ModuleList(input_nets)
        multi = len(input_nets) > 1
        self.type_embed = TypeEmbedding(len(input_nets), input_nets[0].dim) if multi else NoTypeEmbedding()
        self.encoder = encoder
        self.decoder = decoder
        self.queries = queries
        self.sort_field = sort_field
        self.joint_sort = joint_sort
        self.memory = nn.Identity() if decoder_grad_scale == 1.0 else ScaleGradient(decoder_grad_scale)
        self.tasks = nn.ModuleList(tasks)
        self.constituent_tasks = [t for t in tasks if isinstance(t, ConstituentTask)]
        self.object_tasks = [t for t in tasks if isinstance(t, ObjectTask)]
        self.mask_tasks = [t for t in self.object_tasks if isinstance(t, ObjectMaskTask)]
        self.check_tasks(tasks)
        if (decoder is None) != (queries is None):
            raise ValueError("a decoder needs queries and queries need a decoder")
        if decoder is not None and decoder.mask_attention and not self.mask_tasks:
            raise ValueError("mask attention needs an ObjectMaskTask among the tasks")
        self.seed_input = self.seed_type(queries)

    def check_tasks(self, tasks: list[nn.Module]) -> None:
        names = [t.name for t in tasks]
        if len(set(names)) != len(names):
            raise ValueError(f"task names must be unique, got {names}")
        for task in self.constituent_tasks + self.mask_tasks:
            if task.input_name not in self.input_names:
                raise ValueError(
                    f"task '{task.name}' reads constituents '{task.input_name}', but the input networks "
                    f"are for {self.input_names}"
                )
        covered = [t.input_name for t in self.mask_tasks]
        if len(set(covered)) != len(covered):
            raise ValueError(f"at most one mask task per constituent type, got masks over {covered}")

    def seed_type(self, queries: nn.Module | None) -> str | None:
        """The constituent type that seeds the queries: the seed task's, or the queries' ``input_name``."""
        if queries is None or isinstance(queries, LearnedQueries):
            return None
        if isinstance(queries, DynamicQueries):
            task = next((t for t in self.constituent_tasks if t.name == queries.seed_task), None)
            if task is None:
                raise ValueError(f"the queries' seed_task '{queries.seed_task}' is not a constituent task")
            return task.input_name
        name = getattr(queries, "input_name", None) or self.input_names[0]
        if name not in self.input_names:
            raise ValueError(
                f"the queries seed on '{name}', but the input networks are for {self.input_names}"
            )
        if getattr(queries, "input_name", None) is None and len(self.input_names) > 1:
            raise ValueError("with several constituent types the queries must name the type they seed on")
        return name

    def forward(self, batch: dict[str, Tensor], aux_heads: bool = True) -> dict[str, dict]:
        """Run the model on a batch.

        Args:
            batch: the ``data.batch`` dict: for each constituent type ``{type}_{field}`` (B, N_t) features
                and ``{type}_valid``.
            aux_heads: run the object tasks on every decoder layer, as the losses of the auxiliary
                layers need; False (inference) runs them on the last layer only, which is all that
                ``predict`` reads. The decoder computes every layer's mask logits either way: mask
                attention needs them.

        Returns:
            ``{"encoder": {task: {name: tensor}}}`` with the ConstituentTask outputs over their type's
            constituents, e.g. ``["encoder"]["hit_filter"]["logit"]`` (B, N_hit); with a decoder also
            ``{"layer_{i}": {task: {name: tensor}}}`` for every decoder layer i (the last layer is the
            prediction; the others are auxiliary; with ``aux_heads=False`` the last layer only), e.g.
            ``["layer_3"]["track_valid"]["logit"]`` (B, Q), ``["layer_3"]["track_hit"]["logit"]``
            (B, Q, N_hit) (with ``"quality_logit"`` (B, Q) when the mask task has a quality head); and
            ``{"queries": {"valid": (B, Q), "index": (B, Q) seeds among the seed type's constituents}}``
            (index None for learned queries).
            Every constituent axis is in the input order of its type.
        """
        x, x_valid, joined = self.embed(batch)  # from here on the constituents are joined and sorted
        x = self.encode(x, x_valid)
        encoded = {t.name: t(x) for t in self.constituent_tasks}
        outputs: dict[str, dict] = {
            "encoder": {
                t.name: {k: joined.split(v, 1, t.input_name) for k, v in encoded[t.name].items()}
                for t in self.constituent_tasks
            }
        }
        if self.decoder is None:
            return outputs
        x = self.memory(x)  # what the decoder reads; its gradient into the encoder may be scaled
        q, q_valid, index = self.make_queries(x, x_valid, encoded, batch, joined)
        outputs["queries"] = {"valid": q_valid, "index": index}
        mask_fn = self.mask_fn(x, joined) if self.mask_tasks else None
        layers = list(enumerate(self.decoder(q, x, x_valid, q_valid, mask_fn)))
        for i, (q_i, mask_logits) in layers if aux_heads else layers[-1:]:
            layer = outputs[f"layer_{i}"] = {}
            for task in self.object_tasks:  # the decoder already has the mask tasks' logits of q_i
                reuse = task in self.mask_tasks and mask_logits is not None
                out = task.outputs(q_i, mask_logits) if reuse else task(q_i, x)
                covers = getattr(task, "input_name", None)
                layer[task.name] = out | {
                    k: joined.split(out[k], -1, covers) for k in task.constituent_outputs
                }
        return outputs

    def embed(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor, Layout]:
        """The embedded constituents of every type, joined and sorted (B, N, D), their mask and layout."""
        joined, own_orders = layout(batch, self.input_names, self.sort_field, self.joint_sort)
        embedded = []
        for i, (net, own) in enumerate(zip(self.input_nets, own_orders, strict=True)):
            prefix = f"{net.input_name}_"
            if own is None:
                x = net(batch)
            else:  # embedded in its own sort order, then put back: the joined order is built from that
                x = restore_order(
                    own.argsort(-1), net({k: gather_rows(v, own) for k, v in self.fields(batch, prefix)}), 1
                )
            embedded.append(self.type_embed(x, i))
        valid = joined.join([batch[f"{n}_valid"] for n in self.input_names])
        return joined.join(embedded), valid, joined

    @staticmethod
    def fields(batch: dict[str, Tensor], prefix: str):
        """The (key, value) pairs of the per-constituent fields of one type (its ``{type}_*`` keys)."""
        return ((k, v) for k, v in batch.items() if k.startswith(prefix))

    def encode(self, x: Tensor, x_valid: Tensor) -> Tensor:
        """The encoder on the embedded constituents (B, N, D); padding rows come out as zeros when packed.

        An encoder built with ``varlen`` gets the batch packed (``data.batch.pack``), the events' real
        constituents back to back (1, total, D), so that no layer spends work on padding.
        """
        if not self.encoder.varlen:
            return self.encoder(x, x_valid)
        packed, cu_seqlens = pack(x, x_valid)
        return unpack(self.encoder(packed, cu_seqlens=cu_seqlens), cu_seqlens, x_valid)

    def make_queries(
        self, x: Tensor, x_valid: Tensor, encoded: dict, batch: dict[str, Tensor], joined: Layout
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        """The initial queries, their mask, and their seeds' positions among the seed type's constituents.

        The query maker sees the joined, sorted sequence; only constituents of the seed type may seed.
        """
        if self.seed_input is None:
            return self.queries(x, x_valid, encoded, None)
        seed_valid = x_valid & joined.of_type(self.seed_input)
        prefix = f"{self.seed_input}_"
        inputs = {k: joined.join_field(batch, self.seed_input, k) for k, _ in self.fields(batch, prefix)}
        q, q_valid, index = self.queries(x, seed_valid, encoded, inputs)
        return q, q_valid, joined.type_position(index, self.seed_input)

    def mask_fn(self, x: Tensor, joined: Layout):
        """Queries (B, Q, D) -> mask logits over the joined sequence (B, Q, N), for mask attention.

        Each mask task gives the logits on the constituents of its type: mask attention sees the union of
        the masks (-inf on a type that no mask task covers). The constituents are embedded once for every
        layer's mask logits.
        """
        embedded = [task.embed_inputs(x) for task in self.mask_tasks]
        covers = [joined.of_type(t.input_name).unsqueeze(1) for t in self.mask_tasks]

        def union(q: Tensor) -> Tensor:
            logits = None
            for task, x_embed, cover in zip(self.mask_tasks, embedded, covers, strict=True):
                own = task.logits_from(q, x_embed)
                logits = torch.where(cover, own, float("-inf") if logits is None else logits)
            return logits

        return union

    def predict(self, outputs: dict[str, dict]) -> dict[str, dict[str, Tensor]]:
        """Each task's predictions from the final outputs: ``{task: {name: tensor}}``.

        At inference, ``predict(model(batch, aux_heads=False))`` skips the auxiliary layers' heads.
        """
        preds = {t.name: t.predict(outputs["encoder"][t.name]) for t in self.constituent_tasks}
        if self.decoder is not None:
            last = outputs[f"layer_{len(self.decoder.layers) - 1}"]
            preds |= {t.name: t.predict(last[t.name]) for t in self.object_tasks}
            preds["queries"] = outputs["queries"]
        return preds
