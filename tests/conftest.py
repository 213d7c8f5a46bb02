import os
from pathlib import Path

import pandas as pd
import pytest
import torch


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device; none is visible to torch")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture(autouse=True)
def _restore_float32_matmul_precision():
    """`training.cli.build` sets TF32 matmuls ("high") for the whole process; no test may leak it."""
    before = torch.get_float32_matmul_precision()
    yield
    torch.set_float32_matmul_precision(before)


@pytest.fixture(scope="session")
def trackml_dir() -> Path:
    """The real TrackML files: $HEPATTN_TRACKML_DIR, else <repo>/../shared/data/trackml (not committed)."""
    default = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "trackml"
    path = Path(os.environ.get("HEPATTN_TRACKML_DIR", default))
    if not path.is_dir():
        pytest.skip(f"no TrackML files at {path}; set HEPATTN_TRACKML_DIR to the folder that holds them")
    return path


def frames() -> dict[str, pd.DataFrame]:
    """A hand-built event: two particles, a noise hit, a strip hit and pixel cells."""
    # particle 11: pT 2 GeV along +x, 3 pixel hits + 1 strip hit; particle 22: pT 0.5 GeV; hit 6 is noise
    hits = pd.DataFrame(
        {
            "hit_id": [1, 2, 3, 4, 5, 6, 7],
            "x": [30.0, 70.0, 110.0, 500.0, 0.0, -40.0, 0.0],
            "y": [0.0, 0.0, 0.0, 0.0, 50.0, -40.0, 90.0],
            "z": [0.0, 10.0, 20.0, 30.0, 50.0, 0.0, 90.0],
            "volume_id": [8, 8, 8, 13, 8, 8, 8],
            "layer_id": [2, 4, 6, 2, 2, 2, 4],
            "module_id": [1, 1, 1, 1, 1, 9, 1],  # hits 1 and 5 share a module, as do hits 2 and 7
        }
    )
    truth = pd.DataFrame(
        {
            "hit_id": [1, 2, 3, 4, 5, 6, 7],
            "particle_id": [11, 11, 11, 11, 22, 0, 22],
            "weight": [0.1, 0.2, 0.2, 0.1, 0.2, 0.0, 0.2],
        }
    )
    particles = pd.DataFrame(
        {
            "particle_id": [11, 22],
            "vx": [0.0, 0.0],
            "vy": [0.0, 0.0],
            "vz": [1.5, -2.0],
            "px": [2.0, 0.0],
            "py": [0.0, 0.5],
            "pz": [0.0, 0.5],
            "q": [1, -1],
            "nhits": [4, 2],
        }
    )
    cells = pd.DataFrame(
        {"hit_id": [1, 1, 1, 2], "ch0": [10, 11, 12, 5], "ch1": [3, 3, 4, 7], "value": [0.5, 0.25, 0.25, 1.0]}
    )
    return {"hits": hits, "truth": truth, "particles": particles, "cells": cells}


@pytest.fixture
def make_frames():
    return frames
