"""The shipped two-type toy config learns through the command line: ``hepattn fit``, then ``hepattn test``."""

from pathlib import Path

import pandas as pd

import hepattn
from hepattn.cli import main

CONFIG = Path(hepattn.__file__).parent / "configs" / "toy" / "circles_two_types.yaml"


def test_fit_then_test_finds_circles_over_both_detector_types(tmp_path):
    """On the test split (events never trained on) the masks over inner and outer points together reach
    a double-majority efficiency of at least 90% at under 10% fakes (2,000 steps, ~3 minutes on 2 cores).
    """
    common = [f"--config={CONFIG}", "--trainer.accelerator=cpu", "--trainer.enable_progress_bar=false"]
    common += ["--trainer.logger=lightning.pytorch.loggers.CSVLogger"]
    common += [f"--trainer.logger.save_dir={tmp_path}", f"--trainer.default_root_dir={tmp_path}"]
    assert main(["fit", *common]) == 0
    (last,) = tmp_path.rglob("last.ckpt")
    assert main(["test", *common, "--trainer.logger.name=test", f"--ckpt_path={last}"]) == 0
    (logged,) = (tmp_path / "test").rglob("metrics.csv")
    rates = pd.read_csv(logged).iloc[-1]
    assert rates["test/dm_efficiency"] >= 0.90, rates.to_dict()
    assert rates["test/fake_rate"] <= 0.10, rates.to_dict()
