import numpy as np

from hepattn.metrics.plots import event_display


def test_event_display_colours_particles_and_greys_noise(tmp_path):
    rng = np.random.default_rng(0)
    n = 500
    pid = rng.integers(0, 20, n)  # 0 is noise
    fig = event_display(rng.normal(0, 300, n), rng.normal(0, 300, n), rng.normal(0, 900, n), pid)
    ax_xy, ax_rz = fig.axes
    grey, coloured = ax_xy.collections
    assert len(grey.get_offsets()) == (pid == 0).sum()
    assert len(coloured.get_offsets()) == (pid != 0).sum()
    assert ax_rz.get_xlabel() == "z [mm]" and ax_rz.get_ylabel() == "r [mm]"
    fig.savefig(tmp_path / "event.png", dpi=40)
    assert (tmp_path / "event.png").stat().st_size > 1000


def test_event_display_without_truth_draws_every_hit_grey():
    fig = event_display([1.0, 2.0], [0.0, 1.0], [5.0, 6.0], None)
    grey, coloured = fig.axes[0].collections
    assert len(grey.get_offsets()) == 2 and len(coloured.get_offsets()) == 0
