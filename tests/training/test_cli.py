"""Every shipped config parses, and the toy config trains through the real CLI on CPU."""

from pathlib import Path

import pytest
import torch

import hepattn
from hepattn.cli import main
from hepattn.training.checkpoint import load_checkpoint

# variants/ holds partial configs that only apply on top of a full one (tested in test_trackml_configs)
CONFIGS = sorted(
    p for p in (Path(hepattn.__file__).parent / "configs").rglob("*.yaml") if "variants" not in p.parts
)
CIRCLES = next(p for p in CONFIGS if p.name == "circles.yaml")
# a few steps of a one-layer model on a handful of events; note that ``limit_val_batches=1`` would be
# read as the float 1.0 (all batches), so the validation set itself is made small
TINY = [
    "--trainer.accelerator=cpu", "--trainer.enable_progress_bar=false", "--trainer.max_steps=3",
    "--trainer.enable_model_summary=false", "--trainer.val_check_interval=3",
    "--trainer.num_sanity_val_steps=0",
    "--data.init_args.num_train=16", "--data.init_args.num_val=2", "--data.init_args.batch_size=2",
    "--model.model.init_args.encoder.init_args.depth=1", "--model.model.init_args.decoder.init_args.depth=1",
]  # fmt: skip


def test_configs_are_shipped():
    assert CONFIGS, "no YAML configs found inside the package"


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_config_parses(config, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(config), "--print_config"])
    assert exit_info.value.code == 0
    assert "class_path: hepattn.models.maskformer.MaskFormer" in capsys.readouterr().out


@pytest.mark.parametrize("steps", [2, 5])
def test_toy_config_trains_for_max_steps_alone_and_saves_its_config(tmp_path, steps, assert_trained):
    """``--trainer.max_steps`` alone sets the run's and the schedule's length (the config says neither)."""
    overrides = [
        f"--trainer.default_root_dir={tmp_path}", f"--trainer.max_steps={steps}",
        f"--trainer.val_check_interval={steps}", "--trainer.accelerator=cpu", "--data.init_args.batch_size=4",
        f"--data.init_args.num_train={4 * steps}", "--data.init_args.num_val=4",
        "--trainer.enable_progress_bar=false",
    ]  # fmt: skip
    assert main(["fit", "--config", str(CIRCLES), *overrides]) == 0
    assert_trained(tmp_path, [CIRCLES], overrides, steps)
    (saved,) = tmp_path.rglob("config.yaml")
    assert f"max_steps: {steps}" in saved.read_text()


def test_unknown_key_fails_before_training(tmp_path, capsys):
    config = next(p for p in CONFIGS if p.name == "circles.yaml")
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(config), "--model.model.init_args.encoder.init_args.depthh=3"])
    assert exit_info.value.code != 0
    assert "depthh" in capsys.readouterr().err


def fit_weights(root: Path, *overrides: str) -> dict[str, torch.Tensor]:
    main(["fit", "--config", str(CIRCLES), f"--trainer.default_root_dir={root}", *TINY, *overrides])
    (last,) = root.rglob("last.ckpt")
    return load_checkpoint(last)["state_dict"]


def test_same_seed_gives_same_weights(tmp_path):
    first = fit_weights(tmp_path / "first", "--seed_everything=7")
    again = fit_weights(tmp_path / "again", "--seed_everything=7")
    other = fit_weights(tmp_path / "other", "--seed_everything=8")
    assert first.keys() == again.keys() == other.keys()
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not all(torch.equal(first[k], other[k]) for k in first)


def test_malformed_yaml_fails_before_training(tmp_path, capsys):
    config = tmp_path / "broken.yaml"
    config.write_text("trainer:\n  max_steps: [1, 2\n")
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", f"--config={CIRCLES}", f"--config={config}", f"--trainer.default_root_dir={tmp_path}"])
    assert exit_info.value.code != 0
    err = capsys.readouterr().err
    assert "Problems parsing config" in err and "did not find expected ',' or ']'" in err and "line 2" in err
    assert not (tmp_path / "lightning_logs").exists()


def test_wrong_type_in_an_override_names_the_key(tmp_path, capsys):
    args = ["fit", f"--config={CIRCLES}", f"--trainer.default_root_dir={tmp_path}", "--trainer.max_steps=x"]
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code != 0
    err = capsys.readouterr().err
    assert "trainer.max_steps" in err and "Got value: x" in err
    assert not (tmp_path / "lightning_logs").exists()


def test_wrong_type_in_a_config_file_names_the_key(tmp_path, capsys):
    config = tmp_path / "deeper.yaml"
    config.write_text("model:\n  model:\n    init_args:\n      encoder:\n        init_args: {depth: two}\n")
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", f"--config={CIRCLES}", f"--config={config}", f"--trainer.default_root_dir={tmp_path}"])
    assert exit_info.value.code != 0
    err = capsys.readouterr().err
    assert 'key "depth"' in err and "two" in err
    assert not (tmp_path / "lightning_logs").exists()


def test_last_checkpoint_is_the_final_step_when_validation_does_not_improve(tmp_path):
    """The shipped configs keep the newest state in last.ckpt, not the best: with a learning rate of 0
    the validation loss never improves after the first check, and last.ckpt is still the last step."""
    overrides = [
        f"--trainer.default_root_dir={tmp_path}", "--trainer.max_steps=6", "--trainer.val_check_interval=2",
        "--model.optimizer.init_args.lr=0.0", "--model.lr_scheduler.init_args.max_lr=0.0",
    ]  # fmt: skip
    tiny = [o for o in TINY if not o.startswith(("--trainer.max_steps", "--trainer.val_check"))]
    overrides = tiny + overrides
    assert main(["fit", "--config", str(CIRCLES), *overrides]) == 0
    (last,) = tmp_path.rglob("last.ckpt")
    assert load_checkpoint(last)["global_step"] == 6
