"""Metrics a ``MaskFormerModule`` accumulates over validation and test: objects found by their masks.

A metric is named in the YAML config with the tasks whose predictions it reads, so that nothing shared
knows an experiment's task names:

    metrics:
      - class_path: hepattn.metrics.objects.ObjectMatchingMetric
        init_args: {valid_task: track_valid, mask_task: track_hit}

Each metric has ``update(preds, batch)`` (``preds`` is ``MaskFormer.predict`` of a batch), ``compute()``
(the rates so far, by name) and ``reset()``.
"""

import torch
from torch import Tensor

from hepattn.metrics.reco import track_counts, track_rates


class ObjectMatchingMetric:
    """Double-majority, perfect and LHC efficiency, fake and duplicate rates of the predicted objects.

    A predicted object is the mask of a query that the validity task calls real; it is matched to a
    target object by its constituents (``metrics.reco.track_flags``). With constituents of several types
    (one mask task each), an object's constituents are those of every type together.
    """

    def __init__(
        self,
        valid_task: str,
        mask_task: str | list[str],
        target_object: str = "particle",
        input_name: str | list[str] = "hit",
        target_flag: str | None = "target",
    ):
        """Build the metric.

        Args:
            valid_task: name of the object validity task (its prediction ``valid``, B x Q).
            mask_task: name of the object mask task (its prediction ``mask``, B x Q x N), or one per
                constituent type.
            target_object: the target objects, ``{target_object}_valid`` and their masks
                ``{target_object}_{input_name}_valid`` in the batch.
            input_name: the constituent type the mask task covers, or one per mask task.
            target_flag: object field ``{target_object}_{target_flag}`` that marks the objects the
                efficiency counts (e.g. pT above the cut), when the batch has it; else every object.
        """
        self.mask_tasks = [mask_task] if isinstance(mask_task, str) else list(mask_task)
        self.input_names = [input_name] if isinstance(input_name, str) else list(input_name)
        if len(self.mask_tasks) != len(self.input_names):
            raise ValueError(
                f"{type(self).__name__}: {len(self.mask_tasks)} mask tasks {self.mask_tasks} for "
                f"{len(self.input_names)} constituent types {self.input_names}"
            )
        self.valid_task, self.target_object = valid_task, target_object
        self.flag_key = None if target_flag is None else f"{target_object}_{target_flag}"
        self.counts: dict[str, int] = {}

    def update(self, preds: dict[str, dict[str, Tensor]], batch: dict[str, Tensor]) -> None:
        for task in (self.valid_task, *self.mask_tasks):
            if task not in preds:
                raise KeyError(f"{type(self).__name__}: the model has no task '{task}' (has {sorted(preds)})")
        valid = preds[self.valid_task]["valid"]
        if "queries" in preds and preds["queries"]["valid"] is not None:
            valid = valid & preds["queries"]["valid"]
        obj = self.target_object
        counts = track_counts(  # the constituents of every type side by side
            valid,
            torch.cat([preds[task]["mask"] for task in self.mask_tasks], dim=-1),
            batch[f"{obj}_valid"],
            torch.cat([batch[f"{obj}_{name}_valid"] for name in self.input_names], dim=-1),
            torch.cat([batch[f"{name}_valid"] for name in self.input_names], dim=-1),
            batch.get(self.flag_key) if self.flag_key else None,
        )
        for k, v in counts.items():
            self.counts[k] = self.counts.get(k, 0) + v

    def compute(self) -> dict[str, float]:
        return track_rates(self.counts) if self.counts else {}

    def reset(self) -> None:
        self.counts = {}
