"""The ``hepattn`` command: every command is listed, and bad input stops with one line and exit status 2.

A bad number stops at parse time (``hepattn simulate: error: argument --pileup: ...``), a bad file when it
is read (``hepattn: error: <file>: column 'x' row 1 (line 3): ...``); either way nothing is written.
``--debug`` or ``HEPATTN_DEBUG=1`` lets the exception through, and a bug always goes through.
"""

import gzip
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import hepattn
from hepattn import cli
from hepattn.cli import main
from hepattn.data.trackml import event_prefix, write_event

COMMANDS = (
    "info", "simulate", "prep", "validate-sim", "plot-event", "demo", "evaluate", "reconstruct", "bench",
    "fit", "validate", "test", "predict",
)  # fmt: skip
CIRCLES = Path(hepattn.__file__).parent / "configs" / "toy" / "circles.yaml"
HITS_HEADER = "hit_id,x,y,z,volume_id,layer_id,module_id"
HITS_ROWS = ["1,30.0,0.0,0.0,8,2,1", "2,70.0,0.0,10.0,8,2,1", "3,110.0,0.0,20.0,8,2,1"]


def run_cli(capsys, *argv) -> tuple[int, list[str]]:
    """Exit status and stderr lines of ``hepattn ARGV``, as the console script (``sys.exit(main())``) ends."""
    try:
        status = main([str(a) for a in argv])
    except SystemExit as exit_info:  # argparse exits by itself
        status = exit_info.code
    return status, capsys.readouterr().err.splitlines()


def one_line_error(capsys, *argv) -> str:
    """The one stderr line of a command that must fail with exit status 2."""
    status, err = run_cli(capsys, *argv)
    assert status == 2, err
    err = [line for line in err if line.strip() and "%|" not in line]  # a progress bar drawn before it
    assert len(err) == 1 and err[0].startswith("hepattn") and "error" in err[0], err
    return err[0]


def nothing_in(folder: Path) -> bool:
    return not folder.exists() or not any(folder.rglob("*"))


def hits_file(folder: Path, rows=HITS_ROWS, header=HITS_HEADER) -> Path:
    """A plain-text hits file of event 1 in ``folder``; its prefix is ``folder / 'event000000001'``."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "event000000001-hits.csv"
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def test_help_lists_every_command():
    result = subprocess.run(
        [sys.executable, "-m", "hepattn.cli", "--help"], capture_output=True, text=True, check=True
    )
    listed = re.findall(r"^ {4}(\S+)", result.stdout, flags=re.MULTILINE)  # the COMMAND section
    assert sorted(listed) == sorted(COMMANDS)
    assert "--debug" in result.stdout


def test_info_reports_every_kernel(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    for kernel in ("torch", "flex", "flash"):
        assert f"kernel {kernel}" in out


BAD_NUMBERS = [
    (["simulate", "--events", "1", "--pileup", "-5"], "--pileup"),
    (["simulate", "--events", "1", "--pileup", "nan"], "--pileup"),
    (["simulate", "--events", "1", "--pileup", "inf"], "--pileup"),
    (["simulate", "--events", "0"], "--events"),
    (["simulate", "--events", "2.5"], "--events"),
    (["simulate", "--events", "1", "--workers", "0"], "--workers"),
    (["simulate", "--events", "1", "--seed", "-1"], "--seed"),
    (["simulate", "--events", "1", "--first-event", "-1"], "--first-event"),
    (["simulate", "--events", "1", "--first-event", "1000000000"], "--first-event"),
    (["prep", "--input", "in", "--volumes", "8", "-1"], "--volumes"),
    (["validate-sim", "--sim-dir", "in", "--real-events", "2", "-3"], "--real-events"),
    (["validate-sim", "--sim-dir", "in", "--real-particles-event", "x"], "--real-particles-event"),
    (["plot-event", "in/event000000001", "--dpi", "0"], "--dpi"),
    (["bench", "--repeats", "0"], "--repeats"),
    (["bench", "--warmup", "-1"], "--warmup"),
    (["bench", "--hits", "1000,0"], "--hits"),
    (["bench", "--threads", "0"], "--threads"),
    (["bench", "--budget", "0"], "--budget"),
    (["bench", "--budget", "nan"], "--budget"),
]


@pytest.mark.parametrize(("argv", "option"), BAD_NUMBERS, ids=[" ".join(argv) for argv, _ in BAD_NUMBERS])
def test_a_bad_number_stops_at_parse_time(tmp_path, capsys, monkeypatch, argv, option):
    monkeypatch.chdir(tmp_path)
    out = {"prep": "--output", "plot-event": "--out", "bench": "--json"}.get(argv[0], "--out")
    line = one_line_error(capsys, *argv, out, tmp_path / "out")
    assert line.startswith(f"hepattn {argv[0]}: error: argument {option}")
    assert not (tmp_path / "out").exists()


def test_an_output_folder_that_is_a_file_is_refused(tmp_path, capsys):
    taken = tmp_path / "taken"
    taken.write_text("")
    line = one_line_error(capsys, "simulate", "--events", "1", "--out", taken)
    assert "argument --out" in line and str(taken) in line


def test_event_ids_past_nine_digits_are_refused(tmp_path, capsys):
    line = one_line_error(
        capsys, "simulate", "--events", "2", "--first-event", "999999999", "--out", tmp_path / "out"
    )
    assert line.startswith("hepattn: error:") and "9 digits" in line
    assert nothing_in(tmp_path / "out")


def test_simulate_names_a_missing_detectors_file(tmp_path, capsys):
    missing = tmp_path / "detectors.csv.gz"
    args = ["simulate", "--events", "1", "--out", tmp_path / "out", "--detectors", missing]
    assert str(missing) in one_line_error(capsys, *args)
    assert nothing_in(tmp_path / "out")


def test_validate_sim_names_a_missing_real_folder(tmp_path, capsys):
    missing = tmp_path / "no-such-folder"
    args = ["validate-sim", "--sim-dir", tmp_path, "--real-dir", missing, "--out", tmp_path / "out"]
    assert str(missing) in one_line_error(capsys, *args)
    assert nothing_in(tmp_path / "out")


def test_prep_names_a_missing_input_folder(tmp_path, capsys):
    missing = tmp_path / "no-such-folder"
    line = one_line_error(capsys, "prep", "--input", missing, "--output", tmp_path / "out")
    assert str(missing) in line and "does not exist" in line
    assert nothing_in(tmp_path / "out")


def test_prep_of_an_empty_folder(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    line = one_line_error(capsys, "prep", "--input", tmp_path / "empty", "--output", tmp_path / "out")
    assert "no TrackML events" in line and str(tmp_path / "empty") in line
    assert nothing_in(tmp_path / "out")


def test_prep_names_a_missing_truth_file(tmp_path, capsys, make_frames):
    frames = make_frames()
    frames["hits"] = frames["hits"].assign(layer_id=2, module_id=1)
    write_event(event_prefix(tmp_path / "csv", 1), {"hits": frames["hits"], "particles": frames["particles"]})
    line = one_line_error(capsys, "prep", "--input", tmp_path / "csv", "--output", tmp_path / "out")
    assert "no truth file" in line and "event000000001-truth.csv" in line
    assert nothing_in(tmp_path / "out")


@pytest.mark.parametrize(
    ("rows", "header", "where"),
    [
        (["1,30.0,0.0,8,2,1"], HITS_HEADER.replace(",z", ""), "column 'z': missing; a hits file has exactly"),
        (
            [HITS_ROWS[0], "2,nan,0.0,10.0,8,2,1"],
            HITS_HEADER,
            "column 'x' row 1 (line 3): missing value or NaN",
        ),
        (
            [HITS_ROWS[0], "2,70.0,abc,10.0,8,2,1"],
            HITS_HEADER,
            "column 'y' row 1 (line 3): not a number: 'abc'",
        ),
        (
            [HITS_ROWS[0], "2,70.0,0.0,10.0,eight,2,1"],
            HITS_HEADER,
            "column 'volume_id' row 1 (line 3): not an",
        ),
    ],
    ids=["missing column", "NaN", "text in a float column", "text in an integer column"],
)
def test_plot_event_names_the_file_column_and_row(tmp_path, capsys, rows, header, where):
    path = hits_file(tmp_path / "csv", rows, header)
    png = tmp_path / "event.png"
    line = one_line_error(capsys, "plot-event", tmp_path / "csv" / "event000000001", "--out", png)
    assert line.startswith(f"hepattn: error: {path}: {where}")
    assert not png.exists()


def test_plot_event_on_a_corrupt_gzip_file(tmp_path, capsys):
    (tmp_path / "csv").mkdir()
    path = tmp_path / "csv" / "event000000001-hits.csv.gz"
    path.write_bytes(gzip.compress(b"hit_id,x\n1,2\n" * 100)[:40] + b"garbage")
    png = tmp_path / "event.png"
    line = one_line_error(capsys, "plot-event", tmp_path / "csv" / "event000000001", "--out", png)
    assert f"{path}: corrupt or truncated gzip" in line
    assert not png.exists()


def test_evaluate_names_a_missing_predictions_file(tmp_path, capsys):
    missing = tmp_path / "predictions.h5"
    line = one_line_error(capsys, "evaluate", missing, "--out", tmp_path / "plots")
    assert line == f"hepattn: error: no predictions file at {missing}"
    assert nothing_in(tmp_path / "plots")


def test_debug_flag_and_variable_let_the_exception_through(tmp_path, monkeypatch):
    missing = tmp_path / "no-such-folder"
    args = ["prep", "--input", str(missing), "--output", str(tmp_path / "out")]
    with pytest.raises(FileNotFoundError, match="no-such-folder"):
        main(["--debug", *args])
    monkeypatch.setenv("HEPATTN_DEBUG", "1")
    with pytest.raises(FileNotFoundError, match="no-such-folder"):
        main(args)


def test_the_installed_command_exits_2_or_shows_the_traceback(tmp_path):
    missing = tmp_path / "detectors.csv.gz"
    command = [
        sys.executable,
        "-m",
        "hepattn.cli",
        "simulate",
        "--events",
        "1",
        "--out",
        str(tmp_path / "out"),
    ]
    command += ["--detectors", str(missing)]
    env = {k: v for k, v in os.environ.items() if k != "HEPATTN_DEBUG"}
    plain = subprocess.run(command, capture_output=True, text=True, env=env)
    assert plain.returncode == 2
    assert plain.stderr.splitlines() == [
        f"hepattn: error: no detectors file at {missing}: pass --detectors or set HEPATTN_TRACKML_DIR"
    ]
    debug = subprocess.run(command, capture_output=True, text=True, env={**env, "HEPATTN_DEBUG": "1"})
    assert debug.returncode == 1
    assert debug.stderr.startswith("Traceback") and "FileNotFoundError: no detectors file" in debug.stderr
    assert nothing_in(tmp_path / "out")


@pytest.mark.parametrize(
    "error",
    [SystemExit("--device cuda: no CUDA device is visible"), KeyError("the model has no task 'track'")],
    ids=["SystemExit with a message", "KeyError with a sentence"],
)
def test_messages_of_other_deliberate_errors_take_one_line(monkeypatch, capsys, error):
    monkeypatch.setattr(cli, "info", raising(error))
    assert one_line_error(capsys, "info") == f"hepattn: error: {error.args[0]}"


@pytest.mark.parametrize(
    "error",
    [RuntimeError("a bug"), KeyError("hit_x"), SystemExit(3)],
    ids=["RuntimeError", "KeyError", "exit 3"],
)
def test_a_bug_or_a_plain_exit_status_goes_through(monkeypatch, error):
    monkeypatch.setattr(cli, "info", raising(error))
    with pytest.raises(type(error)):
        main(["info"])


def raising(error: BaseException):
    """A command that fails with ``error``."""

    def command(args):
        raise error

    return command


TRAINING = ["--trainer.accelerator=cpu", "--trainer.enable_progress_bar=false"]


def test_a_training_command_ends_with_one_error_line(tmp_path, capsys):
    missing = tmp_path / "missing.ckpt"
    args = ["test", f"--config={CIRCLES}", f"--ckpt_path={missing}", f"--trainer.default_root_dir={tmp_path}"]
    status, err = run_cli(capsys, *args, *TRAINING)
    assert status == 2
    assert err[-1].startswith("hepattn: error:") and str(missing) in err[-1]
    with pytest.raises(FileNotFoundError, match=r"missing\.ckpt"):
        main(["--debug", *args, *TRAINING])


def test_a_checkpoint_that_runs_code_is_refused_by_the_training_commands(tmp_path, capsys):
    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    torch.save({"state_dict": {}, "hyper_parameters": Evil()}, tmp_path / "evil.ckpt")
    args = ["test", f"--config={CIRCLES}", f"--ckpt_path={tmp_path / 'evil.ckpt'}"]
    status, err = run_cli(capsys, *args, f"--trainer.default_root_dir={tmp_path}", *TRAINING)
    assert status == 2
    assert err[-1].startswith("hepattn: error: refusing to load the checkpoint") and "system" in err[-1]
    assert not marker.exists()
