"""The vertex position head: a weighted least-squares fit of the tracks, with weights the model learns.

# B batch, Q queries (vertex candidates), N tracks, D dim.

A track through the vertex v = (x, y, z) with direction phi, theta has, to first order in the small
transverse offset (``fit`` explains the approximation),
    m = (d0, z0) = A v,    A = [[-sin phi, cos phi, 0], [-cot theta cos phi, -cot theta sin phi, 1]],
measured with covariance V (its perigee's d0-z0 block). Query q weighs track n by w_qn in (0, 1) and
solves the weighted normal equations with a weak beam-spot prior P:
    (sum_n w_qn A_n^T V_n^-1 A_n + P) v_q = sum_n w_qn A_n^T V_n^-1 m_n,
    C_q = (sum_n w_qn A_n^T V_n^-1 A_n + P)^-1,
the linearised vertex fit with soft track weights (the adaptive fit takes w from the tracks' chi2;
Fruhwirth et al., J. Phys. G 34 (2007) N343). Here w_qn comes from the query and the track embedding,
and the head is trained by the Gaussian negative log-likelihood of the true vertex under N(v_q, C_q)
(Kendall and Gal, arXiv 1703.04977): a wrong track costs through the residual, a missing good one through
log det C, so the position and its uncertainty are learned together, and C_q is the predicted covariance.
"""

import numpy as np
import torch
from torch import Tensor, nn

from hepattn.models import losses
from hepattn.models.tasks.base import ObjectTask
from hepattn.models.tasks.mask import DistanceSimilarity

FIT_FIELDS = ("d0", "z0", "phi", "theta", "cov_d0_d0", "cov_d0_z0", "cov_z0_z0")  # the tracks' part columns
BEAM_SPOT = 1.0  # mm: a weak prior on x and y, which two nearly collinear tracks barely fix
Z_PRIOR = 1000.0  # mm: none on z in practice; it keeps the equations solvable when every weight vanishes


def linearised(fields: dict[str, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
    """(..., N, 2) measurements (d0, z0), (..., N, 2, 3) their derivatives A and (..., N, 2, 2) V^-1.

    ``fields``: the ``FIT_FIELDS`` of N tracks as (..., N) tensors (mm, radians), float64 for um fits.
    """
    phi, cot = fields["phi"], 1.0 / torch.tan(fields["theta"])
    zero, one = torch.zeros_like(phi), torch.ones_like(phi)
    a = torch.stack(
        [
            torch.stack([-torch.sin(phi), torch.cos(phi), zero], -1),
            torch.stack([-cot * torch.cos(phi), -cot * torch.sin(phi), one], -1),
        ],
        -2,
    )
    c00, c01, c11 = fields["cov_d0_d0"], fields["cov_d0_z0"], fields["cov_z0_z0"]
    det = c00 * c11 - c01 * c01
    adjugate = torch.stack([torch.stack([c11, -c01], -1), torch.stack([-c01, c00], -1)], -2)
    inverse = adjugate / det[..., None, None]
    return torch.stack([fields["d0"], fields["z0"]], -1), a, inverse


def weighted_fit(m: Tensor, a: Tensor, inverse: Tensor, weight: Tensor) -> tuple[Tensor, Tensor]:
    """(..., Q, 3) positions v and (..., Q, 3, 3) covariances C of the weighted fit (module docstring).

    ``m``, ``a``, ``inverse``: ``linearised`` of N tracks (..., N, ...); ``weight``: (..., Q, N).
    """
    at_w = a.transpose(-1, -2) @ inverse  # A^T V^-1, (..., N, 3, 2)
    info = at_w @ a  # (..., N, 3, 3)
    rhs = (at_w @ m[..., None])[..., 0]  # (..., N, 3)
    prior = torch.diag(m.new_tensor([BEAM_SPOT**-2, BEAM_SPOT**-2, Z_PRIOR**-2]))
    lhs = torch.einsum("...qn,...nij->...qij", weight, info) + prior
    cov = torch.linalg.inv(lhs)
    return (cov @ torch.einsum("...qn,...ni->...qi", weight, rhs)[..., None])[..., 0], cov


def as_float64(values) -> Tensor:
    """``values`` (array-like) as a float64 tensor of its own (a copy)."""
    return torch.tensor(np.asarray(values), dtype=torch.float64)


class VertexPositionTask(ObjectTask):
    """Each query's vertex (x, y, z) in mm and its covariance: the fit of the tracks it weighs.

    Reads the tracks' ``{input_name}_fit_{field}`` batch fields (``FIT_FIELDS``, float64), which the
    vertexing dataset provides beside the input features; ``position`` turns the raw outputs and those
    fields into positions, for the loss and for the reconstruction alike.
    """

    constituent_outputs = ("weight_logit",)

    def __init__(
        self,
        name: str,
        dim: int,
        target_object: str = "vertex",
        input_name: str = "track",
        loss_weight: float = 1.0,
    ):
        """Build the head.

        Args:
            name: the task's name.
            dim: width of the query and constituent embeddings.
            target_object: the objects whose ``{target_object}_{x,y,z}`` (mm) are learned.
            input_name: the constituents (tracks) that the queries weigh.
            loss_weight: weight of the Gaussian negative log-likelihood in the total loss.
        """
        super().__init__()
        self.name = name
        self.target_object = target_object
        self.input_name = input_name
        self.loss_weight = loss_weight
        self.query_embed = nn.Linear(dim, dim)
        self.track_embed = nn.Linear(dim, dim)
        self.similarity = DistanceSimilarity()

    def forward(self, q: Tensor, x: Tensor) -> dict[str, Tensor]:
        return {"weight_logit": self.similarity(self.query_embed(q), self.track_embed(x))}

    def cost(self, outputs, batch) -> None:
        return None  # the position does not decide which query owns which vertex

    def position(self, weight: Tensor, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """(B, Q, 3) positions and (B, Q, 3, 3) covariances from (B, Q, N) track weights in [0, 1]."""
        valid = batch[f"{self.input_name}_valid"]
        fields = {f: batch[f"{self.input_name}_fit_{f}"].double() for f in FIT_FIELDS}
        # padding tracks: a harmless unit track with zero weight
        fields = {f: torch.where(valid, v, 1.0 if f != "cov_d0_z0" else 0.0) for f, v in fields.items()}
        m, a, inverse = linearised(fields)
        return weighted_fit(m, a, inverse, weight.double() * valid[:, None])

    def loss(self, outputs, aligned, matched, batch) -> dict[str, Tensor]:
        position, cov = self.position(torch.sigmoid(outputs["weight_logit"].double()), batch)
        target = torch.stack([aligned[f"{self.target_object}_{c}"].double() for c in "xyz"], -1)
        nll = losses.gaussian_nll_loss(position - target, cov, matched)
        return {"nll": self.loss_weight * nll.float()}

    def predict(self, outputs: dict[str, Tensor]) -> dict[str, Tensor]:
        return {"weight": torch.sigmoid(outputs["weight_logit"].float())}
