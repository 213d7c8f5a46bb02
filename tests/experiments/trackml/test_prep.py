import pytest

from hepattn.cli import main
from hepattn.data.trackml import event_prefix, find_events, write_event
from hepattn.experiments.trackml.dataset import load_event
from hepattn.experiments.trackml.prep import prepare_directory


def write_events(directory, make_frames, n=2):
    for i in range(n):
        f = make_frames()
        f["hits"]["layer_id"] = 2
        f["hits"]["module_id"] = 1
        f["truth"] = f["truth"].assign(tx=0.0, ty=0.0, tz=0.0, tpx=0.0, tpy=0.0, tpz=0.0, weight=0.1)
        write_event(event_prefix(directory, i + 10), f)


@pytest.fixture
def events(tmp_path, make_frames):
    write_events(tmp_path / "csv", make_frames)
    return tmp_path


def test_prep_caches_every_event_and_skips_finished_ones(events):
    files = prepare_directory(events / "csv", events / "npz", volumes=[8])
    assert [p.name for p in files] == ["event000000010.npz", "event000000011.npz"]
    event = load_event(files[0])
    assert len(event["hit_x"]) == 6 and event["hit_ncells"].tolist()[:2] == [3, 1]
    before = files[0].stat().st_mtime_ns
    prepare_directory(events / "csv", events / "npz", volumes=[8])
    assert files[0].stat().st_mtime_ns == before  # not prepared again


def test_prep_command_and_missing_input_errors(events, capsys):
    assert main(["prep", "--input", str(events / "csv"), "--output", str(events / "out")]) == 0
    assert "2 prepared events" in capsys.readouterr().out
    with pytest.raises(FileNotFoundError, match="nowhere"):
        find_events(events / "nowhere")
    (events / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no TrackML events"):
        prepare_directory(events / "empty", events / "out2")


def test_plot_event_writes_a_png(events):
    out = events / "display.png"
    assert main(["plot-event", str(events / "csv" / "event000000010"), "--out", str(out), "--dpi", "30"]) == 0
    assert out.stat().st_size > 1000


@pytest.mark.requiresdata
def test_plot_event_on_a_real_test_event_without_truth(trackml_dir, tmp_path):
    out = tmp_path / "event2.png"
    assert main(["plot-event", str(trackml_dir / "event000000002"), "--out", str(out), "--dpi", "30"]) == 0
    assert out.stat().st_size > 1000
