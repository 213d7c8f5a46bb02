"""A toy tracking problem: 2D tracks are circles through the origin, sampled on concentric layers.

A charged particle in a solenoid field leaves a circle through the beam line in the transverse
plane. A circle of radius R through the origin, leaving it at angle alpha with charge q, crosses
the layer of radius r at phi = alpha - q * asin(r / (2 R)). Noise points sit on random layers at
random phi.
"""

import math

import torch

from hepattn.data.batch import collate
from hepattn.data.datamodule import SplitDataModule


def circle_event(
    g: torch.Generator,
    num_layers: int = 8,
    min_tracks: int = 3,
    max_tracks: int = 8,
    num_noise: int = 10,
    min_radius: float = 1.0,
    max_radius: float = 5.0,
    phi_resolution: float = 0.002,
) -> dict[str, torch.Tensor]:
    """One event as a ``data.batch`` dict: ``hit_*`` inputs and ``circle_*`` targets.

    Layers sit at radii 1/L, 2/L, ..., 1. Circle radii are uniform in [min_radius, max_radius] (in units
    of the outer layer radius; above 0.5 so that every circle crosses every layer).
    """
    k = int(torch.randint(min_tracks, max_tracks + 1, (1,), generator=g))
    radii = torch.arange(1, num_layers + 1, dtype=torch.float32) / num_layers
    alpha = (torch.rand(k, 1, generator=g) * 2 - 1) * math.pi
    big_r = min_radius + torch.rand(k, 1, generator=g) * (max_radius - min_radius)
    charge = torch.randint(0, 2, (k, 1), generator=g) * 2 - 1
    smear = phi_resolution * torch.randn(k, num_layers, generator=g)
    phi = alpha - charge * torch.asin(radii / (2 * big_r)) + smear
    r = radii.expand(k, -1)
    noise_r = radii[torch.randint(0, num_layers, (num_noise,), generator=g)]
    noise_phi = (torch.rand(num_noise, generator=g) * 2 - 1) * math.pi
    r_all = torch.cat([r.reshape(-1), noise_r])
    phi_all = torch.remainder(torch.cat([phi.reshape(-1), noise_phi]) + math.pi, 2 * math.pi) - math.pi
    owner = torch.cat([torch.arange(k).repeat_interleave(num_layers), torch.full((num_noise,), -1)])
    perm = torch.randperm(len(owner), generator=g)  # hits arrive in no particular order
    r_all, phi_all, owner = r_all[perm], phi_all[perm], owner[perm]
    first_layer = r_all == radii[0]
    return {
        "hit_x": r_all * torch.cos(phi_all),
        "hit_y": r_all * torch.sin(phi_all),
        "hit_r": r_all,
        # conformal map: circles through the origin become straight lines (scaled to |u|, |v| <= 1)
        "hit_u": radii[0] * r_all.reciprocal() * torch.cos(phi_all),
        "hit_v": radii[0] * r_all.reciprocal() * torch.sin(phi_all),
        "hit_phi": phi_all,
        "hit_valid": torch.ones(len(owner), dtype=torch.bool),
        "hit_seed": first_layer & (owner >= 0),
        "circle_valid": torch.ones(k, dtype=torch.bool),
        "circle_hit_valid": owner.unsqueeze(0) == torch.arange(k).unsqueeze(1),
    }


def circle_batch(g: torch.Generator, size: int, **kwargs) -> dict[str, torch.Tensor]:
    return collate([circle_event(g, **kwargs) for _ in range(size)])


class CircleDataset(torch.utils.data.Dataset):
    """A fixed, seeded set of circle events (event i is the same every epoch)."""

    def __init__(self, num_events: int, seed: int, **event_kwargs):
        self.num_events, self.seed, self.event_kwargs = num_events, seed, event_kwargs

    def __len__(self) -> int:
        return self.num_events

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + i)
        return circle_event(g, **self.event_kwargs)


class CircleDataModule(SplitDataModule):
    """Circle events for trying the library without detector data (see ``circle_event``)."""

    def __init__(
        self,
        num_train: int = 16_384,
        num_val: int = 256,
        num_test: int = 256,
        batch_size: int = 16,
        seed: int = 0,
        num_layers: int = 8,
        min_tracks: int = 3,
        max_tracks: int = 8,
        num_noise: int = 10,
        hit_fields: tuple[str, ...] = ("x", "y", "r", "u", "v"),
    ):
        super().__init__(hit_fields, batch_size)
        kwargs = dict(
            num_layers=num_layers, min_tracks=min_tracks, max_tracks=max_tracks, num_noise=num_noise
        )
        self.splits = {
            "train": CircleDataset(num_train, 3 * seed, **kwargs),
            "val": CircleDataset(num_val, 3 * seed + 1, **kwargs),
            "test": CircleDataset(num_test, 3 * seed + 2, **kwargs),
        }

    def dataset(self, split: str) -> CircleDataset:
        return self.splits[split]
