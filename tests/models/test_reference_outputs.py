"""The shipped configs' models give, bit for bit, the outputs they gave before several constituent types.

``data/reference_outputs.pt`` holds, for each shipped config, a fixed input batch and the outputs of the
model that config builds with its seed, recorded at commit 2880450 (one input network, the model
sorting its hits itself). The single-type case now runs the multi-type code path with a list of one
input network; the same seed must give the same weights and the same outputs, exactly. A setting a
config changed since then is set back for the comparison (``SINCE``).
"""

from pathlib import Path

import pytest
import torch

import hepattn
from hepattn.training.cli import build

CONFIGS = Path(hepattn.__file__).parent / "configs"
REFERENCE = torch.load(Path(__file__).parent / "data" / "reference_outputs.pt", weights_only=True)
CPU = ["--trainer.accelerator=cpu", "--trainer.logger=false", "--trainer.precision=32-true"]
TORCH_KERNEL = ["--model.model.init_args.encoder.init_args.kernel=torch"]
# settings a config has changed since the recording, set back to what they were then
SINCE = {
    "trackml/filter_small.yaml": [  # has_cells read since 2026-12-03
        "--model.model.init_args.input_nets=[{class_path: hepattn.models.embed.InputNet, init_args: "
        "{input_name: hit, fields: [x, y, z, r, eta, phi, u, v, ncells, charge, extent_u, extent_v], "
        "dim: 48, fourier_fields: {phi: 6.283185307179586, eta: 8.0}}}]"
    ],
    "trackml/tracking_small.yaml": [  # geometric Fourier frequencies since 2026-12-03
        "--model.model.init_args.input_nets=[{class_path: hepattn.models.embed.InputNet, init_args: "
        "{input_name: hit, fields: [x, y, z, r, eta, phi, u, v, filter_prob], dim: 64, "
        "fourier_fields: {phi: 6.283185307179586, eta: 8.0}, num_frequencies: 8, spacing: linear}}]"
    ],
}


def flatten(tree: dict, prefix: str = "") -> dict[str, torch.Tensor]:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out |= flatten(value, f"{prefix}{key}/")
        elif value is not None:
            out[f"{prefix}{key}"] = value
    return out


@pytest.mark.parametrize("config", sorted(REFERENCE))
def test_shipped_config_gives_the_recorded_outputs(config):
    extra = TORCH_KERNEL if config in ("trackml/filter.yaml", "trackml/tracking.yaml") else []
    model = build([CONFIGS / config], CPU + extra + SINCE.get(config, [])).model.model.eval()
    recorded = REFERENCE[config]
    with torch.no_grad():
        outputs = flatten(model(recorded["batch"]))
    assert outputs.keys() == recorded["outputs"].keys()
    different = [k for k in outputs if not torch.equal(outputs[k], recorded["outputs"][k])]
    assert not different, different
