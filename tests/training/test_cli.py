"""Every shipped config parses, and the toy config trains through the real CLI on CPU."""

from pathlib import Path

import pytest

import hepattn
from hepattn.cli import main

CONFIGS = sorted((Path(hepattn.__file__).parent / "configs").rglob("*.yaml"))


def test_configs_are_shipped():
    assert CONFIGS, "no YAML configs found inside the package"


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_config_parses(config, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(config), "--print_config"])
    assert exit_info.value.code == 0
    assert "class_path: hepattn.models.maskformer.MaskFormer" in capsys.readouterr().out


def test_toy_config_fits_and_writes_a_checkpoint(tmp_path):
    config = next(p for p in CONFIGS if p.name == "circles.yaml")
    main(
        [
            "fit", "--config", str(config), f"--trainer.default_root_dir={tmp_path}", "--trainer.max_steps=2",
            "--trainer.val_check_interval=2", "--trainer.limit_val_batches=1", "--trainer.accelerator=cpu",
            "--data.init_args.num_train=32", "--trainer.enable_progress_bar=false",
        ]
    )  # fmt: skip
    assert list(tmp_path.rglob("last.ckpt"))
    assert list(tmp_path.rglob("config.yaml"))


def test_unknown_key_fails_before_training(tmp_path, capsys):
    config = next(p for p in CONFIGS if p.name == "circles.yaml")
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(config), "--model.model.init_args.encoder.init_args.depthh=3"])
    assert exit_info.value.code != 0
    assert "depthh" in capsys.readouterr().err
