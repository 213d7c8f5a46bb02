"""Every shipped TrackML config trains for two steps on CPU, on small synthetic prepared events."""

from pathlib import Path

import pytest

import hepattn
from hepattn.bench.cases import synthetic_event
from hepattn.cli import main
from hepattn.experiments.trackml.dataset import save_event

CONFIGS = Path(hepattn.__file__).parent / "configs" / "trackml"
# what a CPU run of the published-scale configs needs: no bf16 autocast, the torch kernel, few queries
CPU = ["--trainer.precision=32-true", "--trainer.accelerator=cpu"]
TORCH_KERNEL = ["--model.model.init_args.encoder.init_args.kernel=torch"]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("prepared")
    for seed, split in enumerate(("train", "val")):
        (root / split).mkdir()
        for i in range(2):  # 6 target helices of 7 hits and 20 noise hits, as prepare_event writes them
            save_event(root / split / f"event00000000{i}.npz", synthetic_event(62, 6, seed=2 * seed + i))
    return root


@pytest.mark.parametrize(
    ("configs", "extra"),
    [
        (["filter_small.yaml"], []),
        (["tracking_small.yaml"], []),
        (["filter.yaml"], CPU + TORCH_KERNEL),
        (["tracking.yaml"], CPU + TORCH_KERNEL),
        (["tracking.yaml", "variants/pt0.6.yaml"], CPU + TORCH_KERNEL),
        (["tracking.yaml", "variants/hungarian.yaml"], CPU + TORCH_KERNEL),
    ],
    ids=lambda v: "+".join(v) if isinstance(v, list) and v and v[0].endswith("yaml") else None,
)
def test_trackml_config_fits_two_steps(configs, extra, prepared, tmp_path, assert_trained):
    overrides = [*extra,
        f"--data.init_args.train_dir={prepared / 'train'}", f"--data.init_args.val_dir={prepared / 'val'}",
        "--data.init_args.num_workers=0", "--data.init_args.batch_size=1",
        f"--trainer.default_root_dir={tmp_path}",
        "--trainer.max_steps=2", "--trainer.val_check_interval=2", "--trainer.limit_val_batches=1",
        "--trainer.enable_progress_bar=false",
    ]  # fmt: skip
    paths = [CONFIGS / c for c in configs]
    assert main(["fit", *(f"--config={p}" for p in paths), *overrides]) == 0
    assert_trained(tmp_path, paths, overrides, steps=2)


def test_missing_data_folder_is_named(tmp_path, capsys):
    missing = tmp_path / "not-prepared"
    code = main(
        ["fit", f"--config={CONFIGS / 'filter_small.yaml'}", f"--data.init_args.train_dir={missing}",
         f"--data.init_args.val_dir={missing}", f"--trainer.default_root_dir={tmp_path}"]
    )  # fmt: skip
    (line,) = capsys.readouterr().err.strip().splitlines()[-1:]
    assert code == 2 and line.startswith("hepattn: error: ") and str(missing) in line
