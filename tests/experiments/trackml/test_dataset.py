import numpy as np
import pytest
import torch

from hepattn.data.batch import collate
from hepattn.experiments.trackml.dataset import (
    TargetCuts,
    TrackMLDataset,
    load_event,
    prepare_event,
    save_event,
    to_model_inputs,
)


def test_prepare_event_features_truth_and_volume_selection(make_frames):
    event = prepare_event(make_frames(), volumes=[8])
    assert len(event["hit_x"]) == 6  # the strip hit (volume 13) is dropped
    np.testing.assert_allclose(event["hit_r"][:3], [30, 70, 110])
    np.testing.assert_allclose(event["hit_phi"][4], -3 * np.pi / 4, rtol=1e-6)
    np.testing.assert_allclose(event["hit_eta"][5], np.arcsinh(1.0), rtol=1e-6)
    np.testing.assert_allclose(event["hit_u"][0], 1 / 30, rtol=1e-6)
    assert event["hit_particle"].tolist() == [0, 0, 0, 1, -1, 1]
    assert event["particle_nhits"].tolist() == [3, 2]  # counted in the selected volumes only
    assert event["hit_id"].tolist() == [1, 2, 3, 5, 6, 7]
    m = event["hit_module"]  # hits 1 and 5 share a module, as do 2 and 7; all others differ
    assert m[0] == m[3] and m[1] == m[5] and len(np.unique(m)) == 4
    np.testing.assert_allclose(event["hit_weight"], [0.1, 0.2, 0.2, 0.2, 0.0, 0.2])
    np.testing.assert_allclose(event["particle_pt"], [2.0, 0.5])
    np.testing.assert_allclose(event["particle_eta"], [0.0, np.arcsinh(1.0)], rtol=1e-6)
    assert event["hit_ncells"].tolist() == [3, 1, 0, 0, 0, 0]
    assert event["hit_charge"][0] == 1.0 and event["hit_extent_u"][0] == 3 and event["hit_extent_v"][0] == 2


def test_model_inputs_apply_the_target_cuts(make_frames):
    event = prepare_event(make_frames(), volumes=[8])
    inputs = to_model_inputs(event, TargetCuts(min_pt=1.0, min_hits=3), ["x", "r", "phi"])
    assert inputs["particle_valid"].tolist() == [True]  # only particle 11 passes pT > 1 GeV
    assert inputs["particle_hit_valid"].tolist() == [[True, True, True, False, False, False]]
    assert inputs["hit_on_target"].tolist() == [True, True, True, False, False, False]
    assert inputs["hit_seed"].tolist() == [True, False, False, False, False, False]  # the innermost hit
    torch.testing.assert_close(inputs["hit_r"][:3], torch.tensor([0.03, 0.07, 0.11]))  # mm -> m
    assert "hit_phi" in inputs  # the sort key is always provided
    loose = to_model_inputs(event, TargetCuts(min_pt=0.1, min_hits=2), ["x"])
    assert loose["particle_valid"].sum() == 2 and loose["hit_seed"].sum() == 2


def test_model_inputs_with_all_particles_flag_the_targets(make_frames):
    event = prepare_event(make_frames(), volumes=[8])
    inputs = to_model_inputs(event, TargetCuts(min_pt=1.0, min_hits=3), ["x"], all_particles=True)
    assert inputs["particle_valid"].tolist() == [True, True]  # both particles have hits
    assert inputs["particle_target"].tolist() == [True, False]  # only particle 11 passes the cuts
    assert inputs["particle_hit_valid"].tolist() == [
        [True, True, True, False, False, False],
        [False, False, False, True, False, True],
    ]
    assert inputs["hit_on_target"].tolist() == [True, True, True, False, False, False]
    assert inputs["hit_seed"].sum() == 1  # seeds and hit labels stay those of the targets
    only_targets = to_model_inputs(event, TargetCuts(min_pt=1.0, min_hits=3), ["x"])
    assert only_targets["particle_target"].tolist() == [True]


def test_seed_weights_follow_the_targets_pt_within_their_cap(make_frames):
    event = prepare_event(make_frames(), volumes=[8])  # particle 0: 2 GeV, 3 hits; particle 1: 0.5 GeV
    inputs = to_model_inputs(event, TargetCuts(min_pt=1.0, min_hits=3), ["x"], seed_weight_cap=10.0)
    # the target's hits weigh pT / min_pt = 2; the non-target's and the noise hit weigh 1
    torch.testing.assert_close(inputs["hit_seed_weight"], torch.tensor([2.0, 2.0, 2.0, 1.0, 1.0, 1.0]))
    capped = to_model_inputs(event, TargetCuts(min_pt=0.25, min_hits=2), ["x"], seed_weight_cap=4.0)
    torch.testing.assert_close(capped["hit_seed_weight"], torch.tensor([4.0, 4.0, 4.0, 2.0, 1.0, 2.0]))
    assert "hit_seed_weight" not in to_model_inputs(event, TargetCuts(), ["x"])  # off by default


def test_prepared_events_round_trip_and_feed_the_batch(tmp_path, make_frames):
    event = prepare_event(make_frames())
    save_event(tmp_path / "event000000001.npz", event)
    save_event(tmp_path / "event000000002.npz", prepare_event(make_frames(), volumes=[8]))
    loaded = load_event(tmp_path / "event000000001.npz")
    assert loaded.keys() == event.keys()
    assert all(np.array_equal(loaded[k], event[k]) for k in event)
    assert not list(tmp_path.glob("*.tmp"))
    dataset = TrackMLDataset(tmp_path, ["x", "y", "ncells"], TargetCuts(min_pt=1.0, min_hits=3))
    batch = collate([dataset[0], dataset[1]])
    assert batch["hit_valid"].sum(1).tolist() == [7, 6]


def test_dataset_errors_name_the_problem(tmp_path, make_frames):
    with pytest.raises(FileNotFoundError, match="missing"):
        TrackMLDataset(tmp_path / "missing", ["x"])
    with pytest.raises(FileNotFoundError, match="no prepared events"):
        TrackMLDataset(tmp_path, ["x"])
    save_event(tmp_path / "event000000001.npz", prepare_event(make_frames()))
    with pytest.raises(ValueError, match="energy"):
        TrackMLDataset(tmp_path, ["energy"])


def test_datamodule_batches_prepared_events(tmp_path, make_frames):
    from hepattn.experiments.trackml.datamodule import TrackMLDataModule

    for i in range(3):
        save_event(tmp_path / f"event00000000{i}.npz", prepare_event(make_frames(), volumes=[8]))
    dm = TrackMLDataModule(train_dir=str(tmp_path), batch_size=2, min_pt=0.1, min_hits=2)
    batches = list(dm.train_dataloader())
    assert [b["hit_valid"].shape[0] for b in batches] == [2, 1]
    assert batches[0]["particle_hit_valid"].shape == (2, 2, 6)
    assert {"hit_x", "hit_phi", "hit_r", "hit_valid"} <= batches[0].keys()
    with pytest.raises(ValueError, match="val_dir"):
        dm.val_dataloader()


def test_events_without_cells_give_zero_cell_features_and_say_so(make_frames):
    event = prepare_event(make_frames(), volumes=[8])
    with_cells = to_model_inputs(event, TargetCuts(), ["ncells", "has_cells"])
    assert with_cells["hit_has_cells"].tolist() == [1.0] * 6 and with_cells["hit_ncells"][0] == 3
    frames = make_frames()
    del frames["cells"]
    for inputs in (
        to_model_inputs(prepare_event(frames, volumes=[8]), TargetCuts(), ["ncells", "has_cells"]),
        to_model_inputs(event, TargetCuts(), ["ncells", "has_cells"], drop_cells=True),  # cell dropout
    ):
        assert inputs["hit_has_cells"].tolist() == [0.0] * 6 and inputs["hit_ncells"].tolist() == [0.0] * 6


def test_cell_dropout_withholds_the_cells_of_about_that_fraction_of_training_events(tmp_path, make_frames):
    save_event(tmp_path / "event000000001.npz", prepare_event(make_frames(), volumes=[8]))
    dataset = TrackMLDataset(tmp_path, cell_dropout=0.25)
    torch.manual_seed(0)
    dropped = sum(float(dataset[0]["hit_has_cells"][0]) == 0.0 for _ in range(400))
    assert 70 <= dropped <= 130  # 100 expected
    assert all(TrackMLDataset(tmp_path)[0]["hit_has_cells"].all() for _ in range(5))
    with pytest.raises(ValueError, match="cell_dropout"):
        TrackMLDataset(tmp_path, cell_dropout=1.5)
