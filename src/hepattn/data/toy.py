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
        "circle_radius": big_r.squeeze(1),
        "circle_charge": charge.squeeze(1).float(),
        "circle_hit_valid": owner.unsqueeze(0) == torch.arange(k).unsqueeze(1),
    }


def circle_batch(g: torch.Generator, size: int, **kwargs) -> dict[str, torch.Tensor]:
    return collate([circle_event(g, **kwargs) for _ in range(size)])


class CircleDataset(torch.utils.data.Dataset):
    """A fixed, seeded set of circle events (event i is the same every epoch)."""

    def __init__(self, num_events: int, seed: int, make_event=None, **event_kwargs):
        self.num_events, self.seed, self.event_kwargs = num_events, seed, event_kwargs
        self.make_event = make_event or circle_event  # (generator, **event_kwargs) -> event

    def __len__(self) -> int:
        return self.num_events

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + i)
        return self.make_event(g, **self.event_kwargs)


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
    ):
        """Build the splits.

        Args:
            num_train: training events (a fixed set, the same every epoch).
            num_val: validation events.
            num_test: test events, also what ``predict`` reads.
            batch_size: events per batch.
            seed: the splits' seed; the three splits never share an event.
            num_layers: concentric layers, at radii 1/L, ..., 1.
            min_tracks: fewest circles in an event.
            max_tracks: most circles in an event.
            num_noise: noise points per event, on random layers at random phi.
        """
        super().__init__(batch_size)
        kwargs = dict(
            num_layers=num_layers, min_tracks=min_tracks, max_tracks=max_tracks, num_noise=num_noise
        )
        self.splits = {
            split: CircleDataset(n, 3 * seed + i, self.make_event, **kwargs)
            for i, (split, n) in enumerate((("train", num_train), ("val", num_val), ("test", num_test)))
        }

    @staticmethod
    def make_event(g: torch.Generator, **kwargs) -> dict[str, torch.Tensor]:
        return circle_event(g, **kwargs)

    def dataset(self, split: str) -> CircleDataset:
        return self.splits[split]


class TwoDetectorCircleDataModule(CircleDataModule):
    """Circle events seen by two kinds of detector, ``inner`` and ``outer`` (see ``two_detector_event``)."""

    def __init__(self, inner_layers: int = 4, bend_resolution: float = 0.01, **kwargs):
        """Build the splits.

        Args:
            inner_layers: the innermost layers, which give (x, y) points; the others give (r, phi, bend).
            bend_resolution: Gaussian smearing of the outer points' bend (radians).
            **kwargs: the ``CircleDataModule`` arguments.
        """
        self.inner_layers, self.bend_resolution = inner_layers, bend_resolution
        super().__init__(**kwargs)

    def make_event(self, g: torch.Generator, **kwargs) -> dict[str, torch.Tensor]:
        return two_detector_event(g, self.inner_layers, self.bend_resolution, **kwargs)


def two_detector_event(
    g: torch.Generator, inner_layers: int = 4, bend_resolution: float = 0.01, **circle_kwargs
) -> dict[str, torch.Tensor]:
    """A circle event seen by two kinds of detector: ``inner_*`` and ``outer_*`` constituents.

    The inner layers (the first ``inner_layers``) give points as (x, y), like pixels. The outer layers
    give (r, phi) and a second measurement, the bend: the angle between the track and the radial
    direction at the layer, asin(r / 2R) with the charge's sign (as the stacked modules of CMS's outer
    tracker measure it), smeared by ``bend_resolution``; noise points get a random bend. Each type also
    carries what its measurement implies: r and phi (which the model sorts by) and the conformal u, v.
    The circles' masks are ``circle_inner_valid`` and ``circle_outer_valid``; the seeds (first-layer
    hits) are inner points.
    """
    event = circle_event(g, **circle_kwargs)
    num_layers = circle_kwargs.get("num_layers", 8)
    if not 0 < inner_layers < num_layers:
        raise ValueError(
            f"inner_layers must be between 1 and num_layers - 1 = {num_layers - 1}, got {inner_layers}"
        )
    r, owner_mask = event["hit_r"], event["circle_hit_valid"]
    inner = r <= inner_layers / num_layers + 1e-6
    owner = torch.where(owner_mask.any(0), owner_mask.float().argmax(0), 0)
    true_bend = -event["circle_charge"][owner] * torch.asin(r / (2 * event["circle_radius"][owner]))
    noise_bend = (torch.rand(len(r), generator=g) * 2 - 1) * math.asin(
        0.5 / circle_kwargs.get("min_radius", 1.0)
    )
    bend = torch.where(owner_mask.any(0), true_bend, noise_bend) + bend_resolution * torch.randn(
        len(r), generator=g
    )
    # the fields each type's measurement gives, plus those derived from it (r, phi and the conformal u, v)
    out = {f"inner_{f}": event[f"hit_{f}"][inner] for f in ("x", "y", "r", "phi", "u", "v", "seed")}
    out |= {f"outer_{f}": event[f"hit_{f}"][~inner] for f in ("r", "phi", "u", "v")}
    out |= {
        "inner_valid": torch.ones(int(inner.sum()), dtype=torch.bool),
        "outer_bend": bend[~inner],
        "outer_valid": torch.ones(int((~inner).sum()), dtype=torch.bool),
        "circle_valid": event["circle_valid"],
        "circle_inner_valid": owner_mask[:, inner],
        "circle_outer_valid": owner_mask[:, ~inner],
    }
    return out
