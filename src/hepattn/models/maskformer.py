"""The MaskFormer: embed -> encoder -> (queries -> decoder) -> task heads. Returns outputs only.

# B batch, N constituents, Q queries, D dim.
"""

from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hepattn.models.decoder import Decoder, DynamicQueries, LearnedQueries, SampledQueries
from hepattn.models.embed import InputNet
from hepattn.models.encoder import Encoder, gather_rows, sort_order
from hepattn.models.tasks.base import ConstituentTask, ObjectTask
from hepattn.models.tasks.mask import ObjectMaskTask


class ScaleGradient(nn.Module):
    """Identity in the forward pass; multiplies the gradient flowing back through it by ``scale``."""

    def __init__(self, scale: float):
        super().__init__()
        self.scale = scale

    def forward(self, x: Tensor) -> Tensor:
        return x.detach() + self.scale * (x - x.detach())


def restore_order(inverse: Tensor | None, t: Tensor, dim: int) -> Tensor:
    """``t`` with its constituent axis ``dim`` put back in input order; ``inverse`` (B, N) undoes the sort."""
    if inverse is None:
        return t
    shape = [1] * t.dim()
    shape[0], shape[dim] = inverse.shape
    return t.gather(dim, inverse.view(shape).expand(t.shape))


class MaskFormer(nn.Module):
    """Set prediction over constituents with one encoder-decoder transformer.

    Without a decoder it is a constituent classifier (e.g. a hit filter). Matching and losses live in
    ``SetCriterion``; turning outputs into predictions is each task's ``predict``.
    """

    def __init__(
        self,
        input_net: InputNet,
        encoder: Encoder,
        tasks: list[nn.Module],
        decoder: Decoder | None = None,
        queries: LearnedQueries | DynamicQueries | SampledQueries | None = None,
        sort_field: str | None = "phi",
        decoder_grad_scale: float = 1.0,
    ):
        """Wire the model.

        Args:
            input_net: embeds the constituent fields; its ``input_name`` names the constituents.
            encoder: encodes the constituents (in ``sort_field`` order).
            tasks: ConstituentTasks (on the encoder output) and ObjectTasks (on every decoder layer).
            decoder: the query decoder; None for an encoder-only model.
            queries: makes the initial queries; needed with a decoder.
            sort_field: constituent field the model sorts by (None: keep the input order). The encoder's
                window and the decoder's mask attention both work on the constituents in this order: a
                window is then a neighbourhood (in phi), and a track's hits, near each other in phi, fill
                few blocks of the (Q, N) mask when the queries are in that order too (block-sparse
                kernels skip the empty blocks). The outputs come back in the input order.
            decoder_grad_scale: scale of the gradient that the queries, the decoder and the object tasks
                send back into the encoder (1: plain end-to-end training). Below 1 the constituent tasks
                (e.g. the seed head of dynamic queries) shape the encoder, which they cannot do on events
                with thousands of hits while the decoder's much larger gradient flows in.
        """
        super().__init__()
        self.input_name = input_net.input_name
        self.input_net = input_net
        self.encoder = encoder
        self.decoder = decoder
        self.queries = queries
        self.sort_field = sort_field
        self.memory = nn.Identity() if decoder_grad_scale == 1.0 else ScaleGradient(decoder_grad_scale)
        self.tasks = nn.ModuleList(tasks)
        self.constituent_tasks = [t for t in tasks if isinstance(t, ConstituentTask)]
        self.object_tasks = [t for t in tasks if isinstance(t, ObjectTask)]
        mask_tasks = [t for t in self.object_tasks if isinstance(t, ObjectMaskTask)]
        self.mask_task = mask_tasks[0] if mask_tasks else None
        if (decoder is None) != (queries is None):
            raise ValueError("a decoder needs queries and queries need a decoder")
        if decoder is not None and decoder.mask_attention and self.mask_task is None:
            raise ValueError("mask attention needs an ObjectMaskTask among the tasks")
        names = [t.name for t in tasks]
        if len(set(names)) != len(names):
            raise ValueError(f"task names must be unique, got {names}")

    def forward(self, batch: dict[str, Tensor], aux_heads: bool = True) -> dict[str, dict]:
        """Run the model on a batch.

        Args:
            batch: the ``data.batch`` dict: ``{input}_{field}`` (B, N) features and ``{input}_valid``.
            aux_heads: run the object tasks on every decoder layer, as the losses of the auxiliary
                layers need; False (inference) runs them on the last layer only, which is all that
                ``predict`` reads. The decoder computes every layer's mask logits either way: mask
                attention needs them.

        Returns:
            ``{"encoder": {task: {name: tensor}}}`` with the ConstituentTask outputs, e.g.
            ``["encoder"]["hit_filter"]["logit"]`` (B, N); with a decoder also
            ``{"layer_{i}": {task: {name: tensor}}}`` for every decoder layer i (the last layer is the
            prediction; the others are auxiliary; with ``aux_heads=False`` the last layer only), e.g.
            ``["layer_3"]["track_valid"]["logit"]`` (B, Q), ``["layer_3"]["track_hit"]["logit"]`` (B, Q, N)
            (with ``"quality_logit"`` (B, Q) when the mask task has a quality head); and
            ``{"queries": {"valid": (B, Q), "index": (B, Q) seed constituents or None}}``.
        """
        inputs, order = self.sort_inputs(batch)  # from here on the constituents are in sort_field order
        restore = partial(restore_order, None if order is None else order.argsort(-1))
        x_valid = inputs[f"{self.input_name}_valid"]
        x = self.encode(self.input_net(inputs), x_valid)
        encoded = {t.name: t(x) for t in self.constituent_tasks}
        outputs: dict[str, dict] = {
            "encoder": {name: {k: restore(v, 1) for k, v in out.items()} for name, out in encoded.items()}
        }
        if self.decoder is None:
            return outputs
        x = self.memory(x)  # what the decoder reads; its gradient into the encoder may be scaled
        q, q_valid, index = self.queries(x, x_valid, encoded, inputs)
        if index is not None and order is not None:
            index = order.gather(1, index)  # the seed constituents' positions in the input order
        outputs["queries"] = {"valid": q_valid, "index": index}
        mask_fn = None
        if self.mask_task is not None:  # the hits are embedded once for every layer's mask logits
            mask_fn = partial(self.mask_task.logits_from, x_embed=self.mask_task.embed_inputs(x))
        layers = list(enumerate(self.decoder(q, x, x_valid, q_valid, mask_fn)))
        for i, (q_i, mask_logits) in layers if aux_heads else layers[-1:]:
            layer = outputs[f"layer_{i}"] = {}
            for task in self.object_tasks:  # the decoder already has the mask task's logits of q_i
                reuse = task is self.mask_task and mask_logits is not None
                out = task.outputs(q_i, mask_logits) if reuse else task(q_i, x)
                layer[task.name] = out | {k: restore(out[k], -1) for k in task.constituent_outputs}
        return outputs

    def encode(self, x: Tensor, x_valid: Tensor) -> Tensor:
        """The encoder on the embedded constituents (B, N, D); padding rows come out as zeros when packed.

        An encoder built with ``varlen`` gets the batch packed, the events' real constituents back to back
        (1, total, D) with their offsets ``cu_seqlens``, so that no layer spends work on padding.
        """
        if not self.encoder.varlen:
            return self.encoder(x, x_valid)
        cu_seqlens = F.pad(x_valid.sum(1).cumsum(0), (1, 0)).int()
        packed = self.encoder(x[x_valid].unsqueeze(0), cu_seqlens=cu_seqlens)
        return torch.zeros_like(x).masked_scatter(x_valid.unsqueeze(-1), packed)

    def sort_inputs(self, batch: dict[str, Tensor]) -> tuple[dict[str, Tensor], Tensor | None]:
        """The constituent fields ``{input}_*`` of ``batch`` in ``sort_field`` order, and that order.

        Returns:
            The fields, padding last, and the order (B, N); without a sort field, the batch and None.
        """
        if self.sort_field is None:
            return batch, None
        valid = batch[f"{self.input_name}_valid"]
        order = sort_order(batch[f"{self.input_name}_{self.sort_field}"], valid)
        fields = (k for k in batch if k.startswith(f"{self.input_name}_"))
        return {k: gather_rows(batch[k], order) for k in fields}, order

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
