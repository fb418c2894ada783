"""The run's search step: where a supernet search starts."""

from carve.run.search_step import zoo_starting_points


def test_a_supernet_search_starts_from_the_zoo_carve_models_within_the_budget():
    zoo = dict(models=[dict(name="carve_075", family="carve", latency_ms=1.6),
                       dict(name="carve_100", family="carve", latency_ms=2.0),
                       dict(name="carve_125", family="carve", latency_ms=3.1),
                       dict(name="mobilenet_v3_large_100", family="mobilenetv3", latency_ms=3.0)])
    assert zoo_starting_points(zoo, 3.0) == ("carve_075", "carve_100")
    assert zoo_starting_points(zoo, 1.0) == ()
