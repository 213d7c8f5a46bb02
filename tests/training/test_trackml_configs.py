"""Every shipped TrackML config trains for two steps on CPU, on small synthetic prepared events."""

from pathlib import Path

import numpy as np
import pytest

import hepattn
from hepattn.cli import main
from hepattn.data.dataset import save_event

CONFIGS = Path(hepattn.__file__).parent / "configs" / "trackml"
# what a CPU run of the published-scale configs needs: no bf16 autocast, the torch kernel, few queries
CPU = ["--trainer.precision=32-true", "--trainer.accelerator=cpu"]
TORCH_KERNEL = ["--model.model.init_args.encoder.init_args.kernel=torch"]


def synthetic_event(rng: np.random.Generator, num_particles: int = 6, hits_per_particle: int = 5) -> dict:
    """Straight tracks from the origin on layers at r = 30..170 mm plus noise, as ``prepare_event`` writes."""
    phi0 = rng.uniform(-np.pi, np.pi, num_particles)
    eta0 = rng.uniform(-2, 2, num_particles)
    r = np.tile(np.linspace(30.0, 170.0, hits_per_particle), num_particles)
    owner = np.repeat(np.arange(num_particles), hits_per_particle)
    owner = np.concatenate([owner, -np.ones(20, dtype=np.int64)])
    r = np.concatenate([r, rng.uniform(30.0, 170.0, 20)])
    phi = np.where(owner >= 0, phi0[owner.clip(0)], rng.uniform(-np.pi, np.pi, len(owner)))
    eta = np.where(owner >= 0, eta0[owner.clip(0)], rng.uniform(-2, 2, len(owner)))
    x, y, z = r * np.cos(phi), r * np.sin(phi), r * np.sinh(eta)
    n = len(owner)
    f4 = np.float32
    event = {f"hit_{k}": v.astype(f4) for k, v in dict(x=x, y=y, z=z, r=r, phi=phi, eta=eta).items()}
    event |= {"hit_theta": (2 * np.arctan(np.exp(-eta))).astype(f4), "hit_u": (x / r**2).astype(f4)}
    event |= {"hit_v": (y / r**2).astype(f4), "hit_particle": owner, "hit_id": np.arange(1, n + 1)}
    event |= {f"hit_{k}": np.ones(n, f4) for k in ("ncells", "charge", "extent_u", "extent_v")}
    event["hit_weight"] = np.full(n, 1.0 / n, f4)
    event["hit_filter_prob"] = np.where(owner >= 0, 0.9, 0.2).astype(f4)  # as the filter writes it
    event |= {"particle_pt": np.full(num_particles, 2.0, f4), "particle_eta": eta0.astype(f4)}
    event |= {"particle_phi": phi0.astype(f4), "particle_q": np.ones(num_particles, f4)}
    event |= {"particle_vz": np.zeros(num_particles, f4), "particle_id": np.arange(1, num_particles + 1)}
    event["particle_nhits"] = np.full(num_particles, hits_per_particle, f4)
    return event


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("prepared")
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        (root / split).mkdir()
        for i in range(2):
            save_event(root / split / f"event00000000{i}.npz", synthetic_event(rng))
    return root


@pytest.mark.parametrize(
    ("configs", "extra"),
    [
        (["filter_small.yaml"], []),
        (["tracking_small.yaml"], []),
        (["filter.yaml"], CPU + TORCH_KERNEL),
        (["tracking.yaml"], CPU + TORCH_KERNEL),
        (["tracking.yaml", "variants/pt0.6.yaml"], CPU + TORCH_KERNEL),
    ],
    ids=lambda v: "+".join(v) if isinstance(v, list) and v and v[0].endswith("yaml") else None,
)
def test_trackml_config_fits_two_steps(configs, extra, prepared, tmp_path):
    args = ["fit", *(f"--config={CONFIGS / c}" for c in configs), *extra]
    args += [
        f"--data.init_args.train_dir={prepared / 'train'}", f"--data.init_args.val_dir={prepared / 'val'}",
        "--data.init_args.num_workers=0", "--data.init_args.batch_size=1",
        f"--trainer.default_root_dir={tmp_path}",
        "--trainer.max_steps=2", "--trainer.val_check_interval=2", "--trainer.limit_val_batches=1",
        "--trainer.enable_progress_bar=false", "--model.lr_scheduler.init_args.total_steps=2",
    ]  # fmt: skip
    main(args)
    assert list(tmp_path.rglob("last.ckpt"))


def test_missing_data_folder_is_named(tmp_path):
    missing = tmp_path / "not-prepared"
    with pytest.raises(FileNotFoundError, match="not-prepared"):
        main(
            ["fit", f"--config={CONFIGS / 'filter_small.yaml'}", f"--data.init_args.train_dir={missing}",
             f"--data.init_args.val_dir={missing}", f"--trainer.default_root_dir={tmp_path}"]
        )  # fmt: skip
