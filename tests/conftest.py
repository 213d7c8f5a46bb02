import os
from pathlib import Path

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
