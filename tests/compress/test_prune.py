import json
import pytest
import torch

from carve.compress import PruneError, prune, pruned_spec
from carve.zoo import count_params, create_model, parse_spec, profile, save_weights

from carve.compress import pruning as prune_mod
from carve.zoo import subnets

from .conftest import FAMILIES, randomize_bn


@pytest.mark.parametrize("name", FAMILIES)
def test_pruned_model_runs_and_round_trips_for_every_family(name, tmp_path):
    torch.manual_seed(0)
    model = randomize_bn(create_model(name, num_classes=10)).eval()
    x = torch.randn(2, 3, 32, 32)
    base = count_params(model)
    pruned, spec = prune(model, ratio=0.4)
    with torch.no_grad():
        y = pruned.eval()(x)
    assert y.shape == (2, 10) and torch.isfinite(y).all()
    assert count_params(pruned) < 0.75 * base
    assert parse_spec(json.loads(spec.to_json())) == spec
    path = save_weights(pruned, tmp_path / f"{name}.safetensors")
    rebuilt = create_model(path).eval()
    with torch.no_grad():
        assert torch.equal(rebuilt(x), y)
    # more pruning, fewer parameters, at several ratios
    sizes = [count_params(create_model(pruned_spec(model.spec, r))) for r in (0.1, 0.3, 0.6)]
    assert sizes[0] > sizes[1] > sizes[2]


def _random_scores(model, trace, criterion="l2"):
    g = torch.Generator().manual_seed(1)
    return {lab: float(torch.rand((), generator=g)) for layer in trace.layers.values() for lab in layer.out}


@pytest.mark.parametrize("name", ["shufflenet_v2_050", "carve_075"])
def test_ratio_zero_with_any_channel_order_is_the_same_function(name, monkeypatch):
    # ShuffleNet emits channels in a score-dependent order; outputs must not change
    monkeypatch.setattr(subnets, "channel_scores", _random_scores)
    model = randomize_bn(create_model(name, num_classes=10)).eval()
    x = torch.randn(2, 3, 32, 32)
    pruned, spec = prune(model, ratio=0.0)
    with torch.no_grad():
        ref = model(x)
        assert (pruned.eval()(x) - ref).abs().max() <= 1e-5 * max(1.0, ref.abs().max().item())


def test_removing_dead_expansion_channels_keeps_the_function():
    """Expansion channels that nothing reads are exactly the ones removed: outputs stay equal."""
    torch.manual_seed(0)
    model = randomize_bn(create_model("mobilenet_v2_100", num_classes=10)).eval()
    for stage in model.blocks:
        for block in stage:
            if not hasattr(block, "conv_pwl") or not isinstance(block.conv_pw, torch.nn.Sequential):
                continue
            mid = block.conv_pw.conv.out_channels
            dead = torch.arange(mid) % 4 == 0  # a quarter of every expansion
            with torch.no_grad():
                block.conv_pw.conv.weight[dead] *= 1e-3  # lowest L2 norm -> chosen for removal
                block.conv_dw.conv.weight[dead] *= 1e-3
                block.conv_pwl.conv.weight[:, dead] = 0  # and nothing reads them
    x = torch.randn(2, 3, 32, 32)
    pruned, spec = prune(model, ratio=0.25, ratios={"blocks.0": 0.0, "stem": 0.0, "head": 0.0,
                                                   **{f"blocks.{i}.{j}.out": 0.0 for i in range(8) for j in range(4)}},
                         round_to=1)
    assert sum(b.mid_channels for b in spec.blocks if b.kind == "ir") < sum(
        b.mid_channels for b in model.spec.blocks if b.kind == "ir")
    with torch.no_grad():
        ref = model(x)
        assert (pruned.eval()(x) - ref).abs().max() <= 1e-4 * max(1.0, ref.abs().max().item())


def test_targets_and_criteria():
    model = create_model("carve_100", num_classes=10)
    base = profile(model, 32).macs
    pruned, spec = prune(model, target_macs=0.7, input_size=32)
    assert 0.5 * base < profile(pruned, 32).macs <= 0.7 * base
    batches = [(torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,)))]
    for crit in ("l1", "bn", "taylor"):
        p, s = prune(model, ratio=0.3, importance=crit, data=batches)
        assert s == pruned_spec(model.spec, 0.3)  # the criterion picks channels, not counts
        assert p.eval()(torch.randn(1, 3, 32, 32)).shape == (1, 10)


def test_taylor_importance_reads_batches_with_keys_as_shard_loaders_yield_them():
    model = create_model("carve_100", num_classes=10)
    x, y = torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))
    plain, _ = prune(model, ratio=0.3, importance="taylor", data=[(x, y)])
    keyed, _ = prune(model, ratio=0.3, importance="taylor", data=[(x, y, ["k0", "k1", "k2", "k3"])])
    assert all(torch.equal(a, b) for a, b in zip(plain.state_dict().values(), keyed.state_dict().values()))
    other, _ = prune(model, ratio=0.3, importance="taylor", data=[(x, (y + 1) % 10)])
    assert not all(torch.equal(a, b) for a, b in zip(plain.state_dict().values(), other.state_dict().values()))


@pytest.mark.parametrize("kwargs, match", [
    (dict(ratio=1.0), "ratio"), (dict(ratio=-0.1), "ratio"), (dict(ratio=0.3, importance="magic"), "importance"),
    (dict(ratio=0.3, importance="taylor"), "data"), (dict(), "exactly one"), (dict(target_macs=1.5), "target_macs"),
])
def test_bad_pruning_requests_are_clear(kwargs, match):
    model = create_model("mobilenet_v3_small_100", num_classes=10)
    with pytest.raises(PruneError, match=match):
        prune(model, **kwargs)


def test_conv_macs_agrees_with_profile():
    model = create_model("mobilenet_v3_small_100", num_classes=10)
    assert prune_mod.conv_macs(model, 64) == profile(model, 64).macs


def _one_model_per_family() -> list[str]:
    from carve.zoo.registry import entries

    first: dict[str, str] = {}
    for entry in entries():
        first.setdefault(entry.family, entry.name)
    return sorted(first.values())


@torch.no_grad()
def _silence(model: torch.nn.Module, trace, removed: set) -> int:
    """Make every channel in ``removed`` exactly zero wherever it is written; returns how many writes."""
    modules = dict(model.named_modules())
    n = 0
    for layer in trace.layers.values():
        rows = [i for i, lab in enumerate(layer.out) if lab in removed]
        if not rows:
            continue
        mod = modules[layer.name]
        mod.weight[rows] = 0  # conv filters, linear rows, BN gamma
        if mod.bias is not None:
            mod.bias[rows] = 0  # conv/linear bias, BN beta: the channel is 0 after BN and act(0) = 0
        n += len(rows)
    return n


@pytest.mark.parametrize("name", _one_model_per_family())
def test_removing_silent_channels_keeps_the_function_for_every_family(name):
    """Zero the producers of exactly the channels the pruner removes: pruning must not change the outputs.

    A family the pruner does not handle must be refused with an error that says so.

    Any channel sliced from the wrong place (a residual, a partial skip, an SE, a ShuffleNet split or
    shuffle labelled wrongly) removes a live channel or keeps a dead one in the wrong position.
    """
    from carve.zoo.channels import walk

    torch.manual_seed(0)
    model = randomize_bn(create_model(name, num_classes=10)).eval()
    spec, ratio = model.spec, 0.4
    try:
        trace = walk(spec)
        counts = subnets.plan_counts(spec, trace, ratio)
    except ValueError as exc:  # a family the pruner does not handle: refused by name, never pruned wrongly
        assert "prun" in str(exc)
        with pytest.raises(ValueError, match="prun"):
            prune(model, ratio=ratio)
        return
    kept_trace = subnets.pruned_trace(spec, counts, subnets.channel_scores(model, trace))
    kept = {lab for layer in kept_trace.layers.values() for lab in layer.out}
    removed = {(gid, j) for gid, size in trace.groups.items() for j in range(size)} - kept
    assert len(removed) > 0.2 * sum(trace.groups.values())
    assert _silence(model, trace, removed) > 0

    pruned, _ = prune(model, ratio=ratio)
    assert count_params(pruned) < 0.75 * count_params(model)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        ref, out = model(x), pruned.eval()(x)
    scale = ref.abs().max().item()
    assert ref.std() > 1e-3 * scale > 0  # silencing must leave a live network to compare
    torch.testing.assert_close(out, ref, rtol=0, atol=5e-6 * scale)
