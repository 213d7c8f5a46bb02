import importlib.util
import json
import math
from pathlib import Path

SCRIPT = Path(__file__).parents[2] / "bench" / "matcher_training.py"


def load_script():
    spec = importlib.util.spec_from_file_location("matcher_training", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_matcher_training_times_the_matcher_inside_each_step(tmp_path):
    script = load_script()
    out, png = tmp_path / "rows.json", tmp_path / "rows.png"
    script.main(["--hits", "600", "--steps", "3", "--events", "2", "--out", str(out), "--plot", str(png)])
    rows = json.loads(out.read_text())
    assert [r["step"] for r in rows] == [1, 2, 3]
    for r in rows:
        assert 0 < r["matcher_ms"] < 1000 * r["step_s"]  # the matcher call is part of the step it is timed in
        assert math.isfinite(r["loss"])
        assert (r["Q"], r["T"]) == (600, 78)  # one query per hit below 2,000; T = 600 / 7.7
    assert png.stat().st_size > 0
