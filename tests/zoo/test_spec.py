import json

import pytest
import torch

from carve.zoo import SpecError, create_model, list_models, parse_spec


def module_signature(model: torch.nn.Module) -> tuple[str, list[tuple[str, tuple[int, ...]]]]:
    return repr(model), [(k, tuple(v.shape)) for k, v in model.state_dict().items()]


@pytest.mark.parametrize("name", list_models())
def test_spec_round_trips_through_json(name):
    model = create_model(name)
    text = model.spec.to_json()
    again = parse_spec(json.loads(text))
    assert again == model.spec
    assert again.hash() == model.spec.hash()
    assert module_signature(create_model(again)) == module_signature(model)


def test_hash_is_stable_and_ignores_labels():
    spec = create_model("mobilenet_v2_100").spec
    renamed = spec.replace(name="other", family="x")
    assert renamed.hash() == spec.hash()
    assert spec.with_num_classes(10).hash() != spec.hash()
    assert json.loads(spec.to_json())["stages"][0]["blocks"][0]["kind"] == "ds"


def _base() -> dict:
    return create_model("mobilenet_v2_050").spec.to_dict()


@pytest.mark.parametrize(
    "path, value, field, shown",
    [
        (("stages", 1, "blocks", 0, "kernel"), 4, "stages[1].blocks[0].kernel", "4"),
        (("stages", 1, "blocks", 0, "out_channels"), 0, "stages[1].blocks[0].out_channels", "0"),
        (("stages", 1, "blocks", 0, "kind"), "resnet", "stages[1].blocks[0].kind", "'resnet'"),
        (("stages", 1, "blocks", 0, "stride"), 3, "stages[1].blocks[0].stride", "3"),
        (("stages", 1, "blocks", 0, "se"), {"ratio": 1.5}, "stages[1].blocks[0].se.ratio", "1.5"),
        (("stages", 1, "blocks", 0, "se"), {"ratio": 0}, "stages[1].blocks[0].se.ratio", "0"),
        (("stem", "channels"), -8, "stem.channels", "-8"),
        (("head", "dropout"), 1.5, "head.dropout", "1.5"),
    ],
)
def test_invalid_spec_names_field_and_value(path, value, field, shown):
    data = _base()
    node = data
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(SpecError) as err:
        parse_spec(data)
    assert err.value.path == field
    assert str(err.value).startswith(field + ":")
    assert str(err.value).endswith(shown)
