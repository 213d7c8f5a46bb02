import subprocess
import sys

import pytest

from hepattn.cli import main


def test_help_lists_the_commands():
    result = subprocess.run(
        [sys.executable, "-m", "hepattn.cli", "--help"], capture_output=True, text=True, check=True
    )
    assert "info" in result.stdout


def test_info_reports_every_kernel(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    for kernel in ("torch", "flex", "flash"):
        assert f"kernel {kernel}" in out


def test_validate_sim_names_a_missing_real_folder(tmp_path):
    missing = tmp_path / "no-such-folder"
    with pytest.raises(SystemExit, match=str(missing)):
        main(["validate-sim", "--sim-dir", str(tmp_path), "--real-dir", str(missing), "--out", str(tmp_path)])
