"""Figures (matplotlib). Functions return figures and never read or write files."""

import numpy as np
from matplotlib.figure import Figure  # the object API needs no display and no global pyplot state


def event_display(x, y, z, particle_id, title: str = "", max_particles: int | None = None) -> Figure:
    """x-y and r-z views of one event: hits coloured by particle, noise (particle_id 0) in grey.

    Args:
        x: hit x positions [mm].
        y: hit y positions [mm].
        z: hit z positions [mm].
        particle_id: (N,) particle of each hit, 0 for noise; None draws every hit in one colour.
        title: figure title.
        max_particles: colour at most this many particles (those with most hits; None: all), the rest grey.
    """
    x, y, z = (np.asarray(a, dtype=float) for a in (x, y, z))
    r = np.hypot(x, y)
    pid = np.zeros(len(x), dtype=np.int64) if particle_id is None else np.asarray(particle_id)
    ids, counts = np.unique(pid[pid != 0], return_counts=True)
    shown = np.sort(ids[np.argsort(-counts)[:max_particles]])
    coloured = np.isin(pid, shown)
    colour = np.random.default_rng(0).random(len(shown))[np.searchsorted(shown, pid[coloured])]
    fig = Figure(figsize=(14, 6.5))
    ax_xy, ax_rz = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.6]})
    for ax, (h, v), (hl, vl) in (
        (ax_xy, (x, y), ("x [mm]", "y [mm]")),
        (ax_rz, (z, r), ("z [mm]", "r [mm]")),
    ):
        ax.scatter(h[~coloured], v[~coloured], s=0.3, c="0.7", lw=0, label="noise / other", rasterized=True)
        ax.scatter(h[coloured], v[coloured], s=0.6, c=colour, cmap="hsv", lw=0, rasterized=True)
        ax.set_xlabel(hl)
        ax.set_ylabel(vl)
    ax_xy.set_aspect("equal")
    fig.suptitle(title or f"{len(x):,} hits, {len(ids):,} particles")
    fig.tight_layout()
    return fig
