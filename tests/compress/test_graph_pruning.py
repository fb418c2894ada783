import json

import pytest
import torch
from torch import nn

from carve.compress import PruneError
from carve.compress.graph_pruning import load_graph_pruned, prune_graph, save_graph_pruned
from carve.compress.pruning import conv_macs

from .conftest import randomize_bn


pytestmark = pytest.mark.usefixtures("one_thread")


class SE(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.reduce, self.expand = nn.Conv2d(c, c // 4, 1), nn.Conv2d(c // 4, c, 1)

    def forward(self, x):
        return x * torch.sigmoid(self.expand(torch.relu(self.reduce(x.mean((2, 3), keepdim=True)))))


class Block(nn.Module):
    """Grouped 1x1 + channel shuffle, depthwise 3x3, SE, 1x1 and a residual add."""

    def __init__(self, c: int):
        super().__init__()
        self.pw1, self.bn1 = nn.Conv2d(c, 2 * c, 1, groups=4, bias=False), nn.BatchNorm2d(2 * c)
        self.dw, self.bn2 = nn.Conv2d(2 * c, 2 * c, 3, padding=1, groups=2 * c, bias=False), nn.BatchNorm2d(2 * c)
        self.se = SE(2 * c)
        self.pw2, self.bn3 = nn.Conv2d(2 * c, c, 1, bias=False), nn.BatchNorm2d(c)

    def forward(self, x):
        y = torch.relu(self.bn1(self.pw1(x)))
        n, c, h, w = y.shape
        y = y.view(n, 4, c // 4, h, w).transpose(1, 2).reshape(n, c, h, w)
        return x + self.bn3(self.pw2(self.se(torch.relu(self.bn2(self.dw(y))))))


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 64, 3, 2, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU())
        self.blocks = nn.Sequential(Block(64), Block(64))
        self.head = nn.Sequential(nn.Conv2d(64, 128, 1), nn.ReLU())
        self.fc = nn.Linear(128, 10)

    def forward(self, x):
        return self.fc(self.head(self.blocks(self.stem(x))).mean((2, 3)))


def tiny() -> Tiny:
    torch.manual_seed(0)
    return randomize_bn(Tiny()).eval()


X = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def test_prunes_a_handwritten_model_to_a_macs_target():
    model = tiny()
    res = prune_graph(model, X, target_macs=0.7, round_to=1)
    assert res.macs_before == conv_macs(model, example=X)
    assert res.macs_after == conv_macs(res.model, example=X)
    assert 0.66 <= res.macs_fraction <= 0.70
    assert res.params_after < res.params_before
    out = res.model(X)
    assert out.shape == (2, 10) and torch.isfinite(out).all()
    assert res.model.fc.out_features == 10 and "fc" in res.kept_whole
    block = res.model.blocks[0]
    assert block.dw.groups == block.dw.in_channels == block.pw1.out_channels < 128
    assert block.se.expand.out_channels == block.dw.out_channels
    assert model.stem[0].out_channels == 64  # the original is left as it was


def test_ignored_layers_keep_their_outputs_and_ratio_prunes_the_rest():
    model = tiny()
    res = prune_graph(model, X, ratio=0.25, ignored=["head.0"])
    assert res.model.head[0].out_channels == 128 and res.model.fc.in_features == 128
    assert res.model.stem[0].out_channels < 64
    assert {"head.0", "fc"} <= set(res.kept_whole)
    assert res.model(X).shape == (2, 10)


def test_save_load_round_trip_reproduces_outputs(tmp_path):
    res = prune_graph(tiny(), X, target_macs=0.6, importance="l1")
    path = save_graph_pruned(res.model, tmp_path / "pruned.safetensors")
    record = json.loads((tmp_path / "pruned.json").read_text())
    assert record["layers"]["stem.0"]["attrs"]["out_channels"] == res.model.stem[0].out_channels
    loaded = load_graph_pruned(path, Tiny)
    assert torch.equal(loaded(X), res.model(X))

    record["layers"]["stem.0"]["tensors"]["weight"][0] += 8  # a record that does not fit the weights
    (tmp_path / "pruned.json").write_text(json.dumps(record))
    with pytest.raises(PruneError, match="pruned.safetensors: the weights do not fit"):
        load_graph_pruned(path, Tiny)


def test_taylor_importance_uses_data():
    data = [(X, torch.tensor([1, 7]))]
    res = prune_graph(tiny(), X, ratio=0.25, importance="taylor", data=data)
    assert res.model.stem[0].out_channels < 64 and res.model(X).shape == (2, 10)
    assert all(p.grad is None for p in res.model.parameters())


@pytest.mark.parametrize("kwargs, match", [
    (dict(ratio=0.3, importance="taylor"), "data: importance='taylor' needs data"),
    (dict(), "exactly one of target_macs, ratio"), (dict(ratio=0.3, target_macs=0.5), "exactly one"),
    (dict(target_macs=1.5), "target_macs"), (dict(ratio=1.0), "ratio"),
    (dict(ratio=0.3, importance="bn"), "importance"), (dict(ratio=0.3, round_to=0), "round_to"),
    (dict(ratio=0.3, ignored=["head.7"]), r"ignored\[0\]: no module named 'head.7'"),
])
def test_bad_requests_name_the_argument(kwargs, match):
    with pytest.raises(PruneError, match=match):
        prune_graph(tiny(), X, **kwargs)


def test_an_unreachable_macs_target_is_refused():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 32, 3, 2, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10))
    with pytest.raises(PruneError, match=r"target_macs: 0.01 of the original MACs is out of reach .* \(0.094 left"):
        prune_graph(model, X, target_macs=0.01, round_to=1)


def test_ssdlite_detector_prunes_with_its_predictors_whole(tmp_path):
    from carve.finetune import build_detector

    def build():
        torch.manual_seed(0)
        return build_detector("ssdlite", "mobilenet_v3_large_100", 3, img_size=128).eval()

    detector, image = build(), torch.rand(1, 3, 128, 128, generator=torch.Generator().manual_seed(0))
    predictors = [name for name, _ in detector.named_modules() if name.endswith("module_list.0.1")]
    assert len(predictors) == 2
    res = prune_graph(detector, image, ratio=0.3)
    assert res.macs_after < 0.7 * res.macs_before
    assert set(predictors) <= set(res.kept_whole)
    for name in predictors:
        assert res.model.get_submodule(name).out_channels == detector.get_submodule(name).out_channels
    with torch.no_grad():
        before, after = detector(image), res.model(image)
    assert len(after) == 1 and after[0].keys() == before[0].keys() == {"boxes", "scores", "labels"}
    for key in ("boxes", "scores", "labels"):
        assert after[0][key].dtype == before[0][key].dtype and after[0][key].shape[1:] == before[0][key].shape[1:]
    path = save_graph_pruned(res.model, tmp_path / "detector.safetensors")
    loaded = load_graph_pruned(path, build)
    with torch.no_grad():
        again = loaded(image)
    assert all(torch.equal(again[0][k], after[0][k]) for k in after[0])

    res.model.train()  # still trainable: two images, as BatchNorm needs more than one value at 1x1 maps
    target = dict(boxes=torch.tensor([[10.0, 20.0, 90.0, 100.0]]), labels=torch.tensor([1]))
    losses = res.model([image[0], image[0].flip(-1)], [target, target])
    assert set(losses) == {"bbox_regression", "classification"} and all(torch.isfinite(v) for v in losses.values())



def test_pipeline_prunes_a_model_without_spec_over_its_graph(tmp_path):
    from carve.compress import pipeline

    report = pipeline(tiny(), [("prune", {"target_macs": 0.7, "round_to": 1}), "fold"], out_dir=tmp_path,
                      latency=False)
    original, pruned, folded = report.rows
    assert original.spec_name == "Tiny" and pruned.notes["graph"] is True and "fc" in pruned.notes["kept_whole"]
    assert 0.66 * original.macs <= pruned.macs <= 0.70 * original.macs
    assert folded.macs == pruned.macs and folded.params < pruned.params  # BN folded into the pruned convs
    loaded = load_graph_pruned(tmp_path / "pruned.safetensors", Tiny)
    assert conv_macs(loaded, 32) == pruned.macs and loaded(X).shape == (2, 10)


def test_pipeline_drops_a_graph_pruning_step_that_does_not_pay(tmp_path):
    from carve.compress import pipeline

    report = pipeline(tiny(), [("prune", {"ratio": 0.3, "min_speedup": 1e6}), "fold"], out_dir=tmp_path,
                      threads=1)
    original, pruned, folded = report.rows
    assert pruned.notes["kept"] is False and pruned.name.endswith("(not kept)") and pruned.macs < original.macs
    assert folded.macs == original.macs  # folded from the unpruned model


def test_pipeline_refuses_a_detector_and_finetuning_without_spec(tmp_path):
    from carve.compress import pipeline
    from carve.finetune import build_detector

    detector = build_detector("ssdlite", "mobilenet_v3_large_100", 3, img_size=128)
    with pytest.raises(ValueError, match="model: the compress pipeline measures classifiers .*prune_graph"):
        pipeline(detector, [("prune", {"ratio": 0.3})], out_dir=tmp_path, latency=False)
    from carve.train.checkpoint import save_checkpoint

    save_checkpoint(tmp_path / "best.pt", {"format": "carve-detect-1", "model": detector.state_dict()})
    with pytest.raises(ValueError, match="best.pt is a detection checkpoint; carve compress measures classifiers"):
        pipeline(str(tmp_path / "best.pt"), [("prune", {"ratio": 0.3})], out_dir=tmp_path, latency=False)
    with pytest.raises(ValueError, match="finetune_epochs: finetuning after pruning rebuilds"):
        pipeline(tiny(), [("prune", {"ratio": 0.3, "finetune_epochs": 1})], out_dir=tmp_path, latency=False)
