"""`hepattn bench` runs a tiny case and writes the JSON the issue asks for."""

import json

from hepattn.cli import main

REQUIRED = {"hits", "kernel", "mode", "median_ms", "peak_mb"}


def test_bench_writes_a_row_per_part_with_the_required_keys(tmp_path):
    out = tmp_path / "bench.json"
    args = ["bench", "--device", "cpu", "--hits", "300,600", "--kernels", "torch"]
    args += ["--parts", "encoder,train,matcher", "--repeats", "2", "--warmup", "1", "--threads", "1"]
    args += ["--json", str(out), "--plot", str(tmp_path / "s.png")]
    assert main(args) == 0
    report = json.loads(out.read_text())
    rows = report["rows"]
    # two hit counts x (encoder, train, one matcher row per installed solver)
    expected = {(n, m) for n in (300, 600) for m in ("encoder", "train", "matcher")}
    assert {(r["hits"], r["mode"]) for r in rows} >= expected
    for row in rows:
        assert set(row) >= REQUIRED, row
        assert row["median_ms"] > 0 and len(row["times_ms"]) == 2
        assert row["peak_mb"] is None or row["peak_mb"] >= 0
    warm = [s for s in report["skipped"] if s["kernel"] == "scipy+sinkhorn"]  # one per hit count, CUDA only
    assert len(warm) == 2 and all("CUDA" in s["reason"] for s in warm)
    header = report["header"]
    assert {"date", "cpu", "cpu_count", "torch_threads", "versions", "settings", "peak_memory"} <= set(header)
    assert header["versions"]["torch"] and header["torch_threads"] == 1
    assert [s["mode"] for s in report["scaling"] if s["kernel"] == "torch"] == ["encoder", "train"]
    assert (tmp_path / "s.png").stat().st_size > 0


def test_flex_training_on_cpu_is_skipped_with_a_reason(tmp_path):
    out = tmp_path / "bench.json"
    args = ["bench", "--device", "cpu", "--hits", "200", "--kernels", "flex", "--parts", "train"]
    args += ["--json", str(out)]
    assert main(args) == 0
    report = json.loads(out.read_text())
    assert report["rows"] == [] and report["failed"] == []
    assert report["skipped"][0]["reason"] == "FlexAttention has no backward on CPU"


def test_flops_only_prints_counts(capsys):
    assert main(["bench", "--device", "cpu", "--flops", "--size", "full", "--hits", "10000"]) == 0
    out = capsys.readouterr().out
    assert "tracking  10000" in out and "filter    10000" in out and "training step" in out
