import torch

from hepattn.data.toy import CircleDataset, circle_batch, circle_event


def test_circle_hits_are_collinear_in_conformal_space():
    # Circles through the origin map to straight lines under (x, y) -> (x, y) / r^2.
    event = circle_event(torch.Generator().manual_seed(0), phi_resolution=0.0)
    for hits in event["circle_hit_valid"]:
        uv = torch.stack([event["hit_u"][hits], event["hit_v"][hits]], dim=1).double()
        centred = uv - uv.mean(0)
        singular = torch.linalg.svdvals(centred)
        assert singular[1] / singular[0] < 1e-5


def test_every_circle_has_one_hit_per_layer_and_one_seed():
    event = circle_event(torch.Generator().manual_seed(1), num_layers=6, num_noise=4)
    per_circle = event["circle_hit_valid"].sum(1)
    assert (per_circle == 6).all()
    noise = ~event["circle_hit_valid"].any(0)
    assert noise.sum() == 4
    assert not event["hit_seed"][noise].any()
    assert event["hit_seed"].sum() == len(per_circle)
    radius = torch.hypot(event["hit_x"], event["hit_y"])
    torch.testing.assert_close(radius, event["hit_r"])


def test_same_seed_same_events_other_seed_other_events_and_event_i_depends_on_seed_and_i_only():
    def same(a, b):
        return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

    batch = circle_batch(torch.Generator().manual_seed(3), 4)
    assert same(batch, circle_batch(torch.Generator().manual_seed(3), 4))
    assert not same(batch, circle_batch(torch.Generator().manual_seed(4), 4))
    data = CircleDataset(6, seed=5)
    events = [data[i] for i in range(6)]
    assert all(same(data[i], events[i]) for i in reversed(range(6)))  # read in any order
    assert same(CircleDataset(2, seed=5)[1], events[1])  # whatever the dataset's size
    assert not any(same(events[i], events[j]) for i in range(6) for j in range(i))
    assert not any(same(CircleDataset(6, seed=6)[i], events[i]) for i in range(6))
