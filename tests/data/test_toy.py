import torch

from hepattn.data.toy import circle_batch, circle_event


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


def test_same_generator_seed_same_batch():
    a = circle_batch(torch.Generator().manual_seed(3), 4)
    b = circle_batch(torch.Generator().manual_seed(3), 4)
    assert all(torch.equal(a[k], b[k]) for k in a)
