# B batch, Q queries, T targets, N constituents.
"""Aligned losses and pairwise costs for object-constituent masks, regression and classification.

Each `*_cost(...)[b, q, t]` equals the matching `*_loss` evaluated on the single pair (query q, target t),
so the matcher minimises exactly what training minimises. Aligned mask losses take a mean over valid
constituents per query, then a mean over contributing queries (`query_valid`); with no contributing query
they return a zero that still carries a gradient. Regression tensors are (B, Q, F) with F features.

The BCE and dice mask losses have their gradients written out (`torch.autograd.Function`): for the
backward pass they keep their inputs only (the logits as given, e.g. bf16, and the targets, e.g. bool)
and (B, Q) sums, where autograd would keep several float32 (B, Q, N) intermediates per decoder layer.
"""

import torch
import torch.nn.functional as F
from torch import Tensor


def _constituent_valid(valid: Tensor | None, like: Tensor) -> Tensor:
    """Bool (B, 1, N) constituent mask, all True when None; `like` is (B, *, N)."""
    if valid is None:
        return torch.ones(like.shape[0], 1, like.shape[-1], dtype=torch.bool, device=like.device)
    return valid[:, None]


def _masked_mean(values: Tensor, valid: Tensor | None) -> Tensor:
    """Mean of `values` over entries where `valid` is True; 0 (with grad) if there are none."""
    if valid is None:
        valid = torch.ones_like(values, dtype=torch.bool)
    return torch.where(valid, values, 0.0).sum() / valid.sum().clamp(min=1)


def _focal_terms(logits: Tensor, gamma: float, alpha: float | None) -> tuple[Tensor, Tensor]:
    """Elementwise focal loss for a positive and for a negative target."""
    p_pos, p_neg = torch.sigmoid(logits), torch.sigmoid(-logits)  # p and 1 - p, each without cancellation
    pos = p_neg**gamma * F.softplus(-logits)
    neg = p_pos**gamma * F.softplus(logits)
    if alpha is not None:
        pos, neg = alpha * pos, (1 - alpha) * neg
    return pos, neg


def _pairwise_linear(neg: Tensor, diff: Tensor, targets: Tensor, valid: Tensor | None) -> Tensor:
    """Cost (B, Q, T) of an elementwise loss linear in the target, l = neg + t * diff, as one matmul.

    Args:
        neg: (B, Q, N) loss of each query if every constituent were negative.
        diff: (B, Q, N) loss change when a constituent is positive instead.
        targets: (B, T, N) target masks.
        valid: (B, N) bool constituent padding, or None.

    Returns:
        (B, Q, T) mean over valid constituents of the loss of each (query, target) pair.
    """
    v = _constituent_valid(valid, neg)  # where, not multiply: nan padding cannot leak into the value
    total = torch.where(v, neg, 0.0).sum(-1, keepdim=True)
    total = total + torch.einsum("bqn,btn->bqt", torch.where(v, diff, 0.0), targets.to(neg.dtype))
    return total / v.sum(-1, keepdim=True).clamp(min=1)


def _per_query_mean(loss: Tensor, valid: Tensor | None, query_valid: Tensor | None) -> Tensor:
    """Mean of a (B, Q, N) elementwise loss over valid constituents, then over contributing queries."""
    v = _constituent_valid(valid, loss)
    per_query = torch.where(v, loss, 0.0).sum(-1) / v.sum(-1).clamp(min=1)
    return _masked_mean(per_query, query_valid)


def _wide_dtype(dtype: torch.dtype) -> torch.dtype:
    """At least float32: bf16 and fp16 are widened, float64 stays."""
    return torch.promote_types(dtype, torch.float32)


def _wide(logits: Tensor) -> Tensor:
    """Logits in at least float32 (see `_wide_dtype`)."""
    return logits.to(_wide_dtype(logits.dtype))


def _query_weights(query_valid: Tensor | None, like: Tensor) -> Tensor:
    """(B, Q, 1) weight of each query in a mean over the contributing queries: 1 / their number, or 0."""
    if query_valid is None:
        query_valid = torch.ones(like.shape[:2], dtype=torch.bool, device=like.device)
    return query_valid[..., None].to(_wide_dtype(like.dtype)) / query_valid.sum().clamp(min=1)


class _MaskBCE(torch.autograd.Function):
    """`mask_bce_loss` with its gradient written out; keeps only the logits and the targets as given."""

    @staticmethod
    def forward(ctx, logits: Tensor, targets: Tensor, v: Tensor, weight: Tensor) -> Tensor:
        x = _wide(logits)
        t = targets.to(x.dtype)
        ctx.save_for_backward(logits, targets, v, weight)
        bce = F.binary_cross_entropy_with_logits(x, t, reduction="none")  # softplus(x) - x t
        return (bce.masked_fill_(~v, 0.0).sum(-1, keepdim=True) * weight).sum()

    @staticmethod
    def backward(ctx, grad: Tensor):
        logits, targets, v, weight = ctx.saved_tensors
        x = _wide(logits)
        t = targets.to(x.dtype)
        dx = torch.sigmoid(x).sub_(t).mul_(grad * weight)  # d(softplus(x) - x t)/dx = p - t
        return dx.masked_fill_(~v, 0.0).to(logits.dtype), None, None, None


def mask_bce_loss(
    logits: Tensor, targets: Tensor, valid: Tensor | None = None, query_valid: Tensor | None = None
) -> Tensor:
    """Binary cross-entropy of (B, Q, N) mask logits against the matched (B, Q, N) target masks.

    bce = softplus(x) - x t, a mean over valid constituents per query, then over contributing queries.
    """
    v = _constituent_valid(valid, logits)
    per_query = v.sum(-1, keepdim=True).clamp(min=1)  # (B, 1, 1) valid constituents of each event
    return _MaskBCE.apply(logits, targets, v, _query_weights(query_valid, logits) / per_query)


def mask_bce_cost(logits: Tensor, targets: Tensor, valid: Tensor | None = None) -> Tensor:
    """Pairwise `mask_bce_loss` (B, Q, T); bce = softplus(x) - x t is linear in t, so no (B, Q, T, N)."""
    logits = logits.float()
    return _pairwise_linear(F.softplus(logits), -logits, targets, valid)


def mask_focal_loss(
    logits: Tensor,
    targets: Tensor,
    valid: Tensor | None = None,
    query_valid: Tensor | None = None,
    gamma: float = 2.0,
    alpha: float | None = None,
) -> Tensor:
    """Focal loss (arXiv 1708.02002) of (B, Q, N) mask logits; soft targets interpolate linearly."""
    pos, neg = _focal_terms(logits.float(), gamma, alpha)
    t = targets.float()
    return _per_query_mean(t * pos + (1 - t) * neg, valid, query_valid)


def mask_focal_cost(
    logits: Tensor,
    targets: Tensor,
    valid: Tensor | None = None,
    gamma: float = 2.0,
    alpha: float | None = None,
) -> Tensor:
    """Pairwise `mask_focal_loss` (B, Q, T) against (B, T, N) target masks."""
    pos, neg = _focal_terms(logits.float(), gamma, alpha)
    return _pairwise_linear(neg, pos - neg, targets, valid)


class _MaskDice(torch.autograd.Function):
    """`mask_dice_loss` with its gradient written out; keeps the logits, the targets and (B, Q) sums."""

    @staticmethod
    def forward(ctx, logits: Tensor, targets: Tensor, v: Tensor, weight: Tensor) -> Tensor:
        p = _wide(logits).sigmoid().masked_fill_(~v, 0.0)
        t = targets.masked_fill(~v, 0).to(p.dtype)
        numerator = 2 * (p * t).sum(-1, keepdim=True) + 1  # (B, Q, 1)
        denominator = p.sum(-1, keepdim=True) + t.sum(-1, keepdim=True) + 1
        ctx.save_for_backward(logits, targets, v, weight, numerator, denominator)
        return ((1 - numerator / denominator) * weight).sum()

    @staticmethod
    def backward(ctx, grad: Tensor):
        logits, targets, v, weight, numerator, denominator = ctx.saved_tensors
        p = _wide(logits).sigmoid()
        t = targets.to(p.dtype)
        # d(1 - num / den)/dp_n = (num - 2 t_n den) / den^2, and dp/dx = p (1 - p)
        dp = t.mul(-2 * denominator).add_(numerator).mul_(grad * weight / denominator**2)
        dx = dp.mul_(p).mul_(1 - p)
        return dx.masked_fill_(~v, 0.0).to(logits.dtype), None, None, None


def mask_dice_loss(
    logits: Tensor, targets: Tensor, valid: Tensor | None = None, query_valid: Tensor | None = None
) -> Tensor:
    """Soft dice loss (arXiv 1606.04797), 1 - (2 Σpt + 1) / (Σp + Σt + 1) over valid constituents."""
    v = _constituent_valid(valid, logits)
    return _MaskDice.apply(logits, targets, v, _query_weights(query_valid, logits))


def mask_dice_cost(logits: Tensor, targets: Tensor, valid: Tensor | None = None) -> Tensor:
    """Pairwise `mask_dice_loss` (B, Q, T) against (B, T, N) target masks."""
    v = _constituent_valid(valid, logits)
    p, t = torch.where(v, logits.float().sigmoid(), 0.0), torch.where(v, targets.float(), 0.0)
    numerator = 2 * torch.einsum("bqn,btn->bqt", p, t) + 1
    return 1 - numerator / (p.sum(-1)[:, :, None] + t.sum(-1)[:, None, :] + 1)


def l1_loss(pred: Tensor, target: Tensor, query_valid: Tensor | None = None) -> Tensor:
    """Mean absolute error of (B, Q, F) predictions, averaged over features then contributing queries."""
    return _masked_mean((pred.float() - target.float()).abs().mean(-1), query_valid)


def l1_cost(pred: Tensor, target: Tensor) -> Tensor:
    """Pairwise `l1_loss` (B, Q, T) between (B, Q, F) predictions and (B, T, F) targets."""
    return torch.cdist(pred.float(), target.float(), p=1) / pred.shape[-1]


def gaussian_nll_loss(residual: Tensor, cov: Tensor, query_valid: Tensor | None = None) -> Tensor:
    """Gaussian negative log-likelihood of (B, Q, F) residuals under (B, Q, F, F) predicted covariances.

    ``(r^T C^-1 r + log det C) / 2`` per query (the constant dropped), averaged over contributing queries:
    a head that predicts its own uncertainty (Kendall and Gal, arXiv 1703.04977). Computed in the dtype
    given (float64 for covariances of um-sized residuals).
    """
    chol = torch.linalg.cholesky(cov)
    whitened = torch.linalg.solve_triangular(chol, residual[..., None], upper=False)[..., 0]
    log_det = 2 * torch.diagonal(chol, dim1=-2, dim2=-1).log().sum(-1)
    return _masked_mean(0.5 * (whitened.square().sum(-1) + log_det), query_valid)


def cross_entropy_loss(logits: Tensor, labels: Tensor, class_weights: Tensor | None = None) -> Tensor:
    """Class-weighted cross-entropy of (M, C) logits against (M,) labels; 0 (with grad) when M = 0.

    As in torch, the mean is weighted by each label's class weight, so a single pair's loss is its NLL.
    """
    nll = F.cross_entropy(logits.float(), labels, reduction="none")
    weight = torch.ones_like(nll) if class_weights is None else class_weights.to(nll)[labels]
    return (weight * nll).sum() / weight.sum().clamp(min=torch.finfo(nll.dtype).tiny)


def cross_entropy_cost(logits: Tensor, labels: Tensor) -> Tensor:
    """Pairwise `cross_entropy_loss` (B, Q, T) of (B, Q, C) logits against (B, T) integer labels.

    Padded targets may hold any label, e.g. -1: the matcher ignores their columns, so they are read as 0.
    """
    log_prob = logits.float().log_softmax(-1)
    index = labels.long().clamp_min(0)[:, None].expand(-1, log_prob.shape[1], -1)
    return -log_prob.gather(-1, index)


def bce_loss(
    logits: Tensor, targets: Tensor, valid: Tensor | None = None, pos_weight: float | None = None
) -> Tensor:
    """Elementwise binary cross-entropy (any shape), averaged over valid entries.

    Args:
        logits: Classification logits, e.g. (B, N) constituent filter or (B, Q) object validity.
        targets: Same shape as `logits`, bool or float in [0, 1].
        valid: Same shape, bool, True for entries that count; None means all.
        pos_weight: Weight of the positive term, to balance rare positives; None means 1.
    """
    weight = None if pos_weight is None else logits.new_tensor(pos_weight, dtype=torch.float)
    loss = F.binary_cross_entropy_with_logits(
        logits.float(), targets.float(), reduction="none", pos_weight=weight
    )
    return _masked_mean(loss, valid)


def focal_loss(
    logits: Tensor,
    targets: Tensor,
    valid: Tensor | None = None,
    gamma: float = 2.0,
    alpha: float | None = None,
) -> Tensor:
    """Elementwise focal loss (arXiv 1708.02002), any shape, averaged over valid entries."""
    pos, neg = _focal_terms(logits.float(), gamma, alpha)
    t = targets.float()
    return _masked_mean(t * pos + (1 - t) * neg, valid)
