import shutil
from pathlib import Path

import pytest
import torch

from carve.finetune import ClassifyConfig, classify
from carve.zoo import create_model

CIFAR = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "cifar10"


@pytest.fixture
def tiny_folder(tmp_path: Path) -> Path:
    if not CIFAR.is_dir():
        pytest.skip(f"cifar10 not found at {CIFAR}")
    for split, src, n in (("train", "train", 12), ("val", "test", 6)):
        for cls in ("cat", "ship"):
            dst = tmp_path / "data" / split / cls
            dst.mkdir(parents=True)
            for f in sorted((CIFAR / src / cls).iterdir())[:n]:
                shutil.copy(f, dst / f.name)
    return tmp_path / "data"


def test_classify_freezes_stages_and_trains_a_new_head(tiny_folder: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    before = create_model("mobilenet_v2_035", num_classes=2, small_input=2).state_dict()
    cfg = ClassifyConfig(model="mobilenet_v2_035", data=str(tiny_folder), out_dir=str(tmp_path / "run"), epochs=2,
                         batch_size=8, small_input=2, freeze=2, backbone_lr_mult=0.1, workers=0, progress=False,
                         tensorboard=False, seed=0)
    res = classify(cfg)
    after = res.model.state_dict()
    assert res.frozen_params > 0 and res.trainable_params > 0
    assert torch.equal(before["blocks.1.0.conv_pw.conv.weight"], after["blocks.1.0.conv_pw.conv.weight"])
    assert not torch.equal(before["blocks.5.0.conv_pw.conv.weight"], after["blocks.5.0.conv_pw.conv.weight"])
    assert not torch.equal(before["classifier.weight"], after["classifier.weight"])
    assert len(res.history) == 2 and 0 <= res.top1 <= 100
    reloaded = create_model(res.weights)
    assert reloaded.num_classes == 2
    with pytest.raises(ValueError, match="ClassifyConfig.lr"):
        ClassifyConfig(lr=0)


def test_classify_resumes_exactly_after_a_crash(tiny_folder: Path, tmp_path: Path, monkeypatch) -> None:
    from carve.train import loop

    kw = dict(model="mobilenet_v2_035", data=str(tiny_folder), epochs=2, batch_size=8, small_input=2, freeze=1,
              frozen_bn=True, workers=0, progress=False, tensorboard=False, seed=0)
    straight = classify(ClassifyConfig(out_dir=str(tmp_path / "a"), **kw))
    real = loop.train_one_epoch

    def crash_in_second_epoch(state, model, loader, loss_fn):
        if state.epoch == 1:
            raise KeyboardInterrupt
        return real(state, model, loader, loss_fn)

    monkeypatch.setattr(loop, "train_one_epoch", crash_in_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        classify(ClassifyConfig(out_dir=str(tmp_path / "b"), **kw))
    monkeypatch.setattr(loop, "train_one_epoch", real)
    resumed = classify(ClassifyConfig(out_dir=str(tmp_path / "b"), resume=True, **kw))
    assert [h["step"] for h in resumed.history] == [h["step"] for h in straight.history] == [3, 6]
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)
    assert resumed.top1 == straight.top1


def test_linear_probe_trains_only_the_classifier(tiny_folder: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    before = create_model("mobilenet_v2_035", num_classes=2, small_input=2).state_dict()
    torch.manual_seed(0)
    cfg = ClassifyConfig(model="mobilenet_v2_035", data=str(tiny_folder), out_dir=str(tmp_path / "run"), epochs=1,
                         batch_size=8, small_input=2, freeze="linear", workers=0, progress=False, tensorboard=False,
                         seed=0)
    res = classify(cfg)
    after = res.model.state_dict()
    assert res.trainable_params == 2 * res.model.num_features + 2
    changed = {k for k in before if k in after and not torch.equal(before[k], after[k])}
    assert changed == {"classifier.weight", "classifier.bias"}


def test_classify_evaluates_with_statistics_of_the_finetuned_weights(tiny_folder: Path, tmp_path: Path) -> None:
    import copy

    from carve.train import calibration_loader, recalibrate_bn

    kw = dict(model="mobilenet_v2_035", data=str(tiny_folder), epochs=1, batch_size=8, small_input=2, workers=0,
              progress=False, tensorboard=False, seed=0)
    res = classify(ClassifyConfig(out_dir=str(tmp_path / "default"), **kw))  # re-estimation on by default
    again = copy.deepcopy(res.model)
    recalibrate_bn(again, calibration_loader(tiny_folder, 32, 8, batches=20))
    stats = {k: v for k, v in res.model.named_buffers() if k.endswith(("running_mean", "running_var"))}
    for name, value in again.named_buffers():
        if name in stats:
            torch.testing.assert_close(stats[name], value)
    stale = classify(ClassifyConfig(out_dir=str(tmp_path / "stale"), bn_recalibration=0, **kw))
    drift = [(stats[k] - v).abs().max() for k, v in stale.model.named_buffers() if k in stats]
    assert max(drift) > 1e-3  # the running average of training steps, not the finetuned weights' statistics
