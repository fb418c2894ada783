import json
from pathlib import Path

import pytest
import torch

from carve.finetune import DetectConfig, detect, load_detector
from carve.finetune import detection as detect_mod

IDS = [9, 25, 30, 34]


def _config(root: Path, out: Path, **kw) -> DetectConfig:
    base = dict(backbone="mobilenet_v3_small_075", data=str(root), out_dir=str(out), img_size=96, batch_size=2,
                train_ids=IDS, val_ids=IDS, progress=False, tensorboard=False, examples=2, lr=0.05,
                warmup_epochs=0, fpn_channels=32)
    base.update(kw)
    return DetectConfig(**base)


@pytest.mark.parametrize("head", ["ssdlite", "fasterrcnn"])
def test_a_few_steps_reduce_the_loss(coco_subset: Path, tmp_path: Path, head: str) -> None:
    res = detect(_config(coco_subset, tmp_path, head=head, epochs=4, augment="none", eval_every=100))
    losses = [h["train_loss"] for h in res.history]
    assert losses[-1] < 0.85 * losses[0], losses
    assert set(res.metrics) >= {"AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large", "per_class"}
    results = json.loads(res.results_json.read_text())
    assert results and {r["image_id"] for r in results} <= set(IDS)
    assert res.examples_png is not None and res.examples_png.is_file()
    assert (tmp_path / "metrics.csv").is_file() and (tmp_path / "curves.png").is_file()


def test_resume_after_a_crash_matches_an_uninterrupted_run(coco_subset: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    kw = dict(head="ssdlite", epochs=2, augment="full", examples=0, eval_every=100, backbone_lr_mult=0.5)
    straight = detect(_config(coco_subset, tmp_path / "a", **kw))

    real = detect_mod.train_epoch

    def crash_in_second_epoch(state, model, loader, loss_fn):
        if state.epoch == 1:
            raise KeyboardInterrupt
        return real(state, model, loader, loss_fn)

    monkeypatch.setattr(detect_mod, "train_epoch", crash_in_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        detect(_config(coco_subset, tmp_path / "b", **kw))
    monkeypatch.setattr(detect_mod, "train_epoch", real)
    resumed = detect(_config(coco_subset, tmp_path / "b", resume=True, **kw))

    assert [h["step"] for h in resumed.history] == [h["step"] for h in straight.history]
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)
    assert resumed.metrics["AP"] == straight.metrics["AP"]

    model, meta = load_detector(resumed.checkpoint)
    assert meta["epoch"] == 2 and len(meta["cat_ids"]) == 80 and meta["class_names"][0] == "person"
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, b[k], rtol=0, atol=0)


def test_bad_config_names_the_field() -> None:
    with pytest.raises(ValueError, match="DetectConfig.head"):
        DetectConfig(head="yolo")
    with pytest.raises(ValueError, match="DetectConfig.augment"):
        DetectConfig(augment="heavy")


def test_non_finite_loss_is_the_shared_error_and_keeps_the_checkpoint(coco_subset: Path, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from carve.train import NonFiniteLoss, load_checkpoint

    real = detect_mod.detection_loss

    def poisoned(model, state):
        loss_of = real(model, state)

        def nan_in_epoch_two(batch):
            loss, n, terms = loss_of(batch)
            return (loss * float("nan") if state.epoch == 1 else loss), n, terms

        return nan_in_epoch_two

    monkeypatch.setattr(detect_mod, "detection_loss", poisoned)
    with pytest.raises(NonFiniteLoss, match=r"loss became nan at epoch 2, step 3.*last\.pt"):
        detect(_config(coco_subset, tmp_path, head="ssdlite", epochs=2, augment="none", eval_every=100, examples=0))
    assert load_checkpoint(tmp_path / "last.pt")["epoch"] == 1


def test_a_carve_weights_file_is_the_whole_backbone(tmp_path: Path) -> None:
    """One file from carve train (spec and weights together) goes to detect as the backbone."""
    from carve.finetune import build_detector
    from carve.zoo import create_model, save_weights

    torch.manual_seed(0)
    trained = create_model("mobilenet_v3_small_075", num_classes=10)
    path = save_weights(trained, tmp_path / "final.safetensors")
    detector = build_detector("ssdlite", str(path), num_classes=2, img_size=96)
    _, adapter = detect_mod.find_backbone(detector)
    assert adapter.spec.hash() == trained.spec.hash()
    ours = adapter.body.state_dict()
    theirs = trained.state_dict()
    assert ours and all(torch.equal(v, theirs[k]) for k, v in ours.items())


def _first_bn_input_mean(model: torch.nn.Module, batches) -> torch.Tensor:
    """Per-channel mean of what the detector's first BatchNorm receives over ``batches`` (model in eval mode)."""
    bn = next(m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    means = []
    hook = bn.register_forward_pre_hook(lambda m, args: means.append(args[0].mean(dim=(0, 2, 3))))
    with torch.no_grad():
        for (images,) in batches:
            model(images)
    hook.remove()
    return torch.stack(means).mean(0), bn.running_mean


def test_evaluation_re_estimates_batchnorm_statistics_for_the_final_weights(coco_subset: Path, tmp_path: Path) -> None:
    kw = dict(head="ssdlite", epochs=2, augment="full", examples=0, eval_every=100)
    stale = detect(_config(coco_subset, tmp_path / "stale", bn_recalibration=0, **kw))
    fresh = detect(_config(coco_subset, tmp_path / "fresh", **kw))
    cfg = _config(coco_subset, tmp_path / "x", **kw)
    train, _ = detect_mod.load_splits(cfg)

    # the same training: only the BatchNorm statistics differ
    a, b = stale.model.state_dict(), fresh.model.state_dict()
    assert any(not torch.equal(a[k], b[k]) for k in a if k.endswith("running_mean"))
    for k in a:
        if not k.endswith(("running_mean", "running_var", "num_batches_tracked")):
            torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)
    # re-estimated: the statistics of the final weights on the training images; stale: a blend of older steps
    data_mean, running = _first_bn_input_mean(fresh.model.eval(), detect_mod.calibration_batches(train, cfg))
    torch.testing.assert_close(running, data_mean, rtol=1e-4, atol=1e-4)
    data_mean, running = _first_bn_input_mean(stale.model.eval(), detect_mod.calibration_batches(train, cfg))
    assert (running - data_mean).abs().max() > 1e-2


def test_channels_last_trains_the_same_detector_in_the_faster_layout(coco_subset: Path, tmp_path: Path) -> None:
    kw = dict(head="ssdlite", epochs=1, max_steps=2, augment="none", examples=0, eval_every=100)
    plain = detect(_config(coco_subset, tmp_path / "plain", **kw))
    fast = detect(_config(coco_subset, tmp_path / "fast", channels_last=True, **kw))

    convs = [m.weight for m in fast.model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert all(w.is_contiguous(memory_format=torch.channels_last) for w in convs)
    assert any(not w.is_contiguous() for w in convs)  # the depthwise and 3x3 kernels really moved
    # the same two steps, up to the order of floating-point sums (weights are not compared: a BatchNorm's shift
    # before another BatchNorm has a gradient of exactly zero, so its value is float noise in either layout)
    for key in ("train_loss", "loss_classification", "loss_bbox_regression"):
        assert fast.history[0][key] == pytest.approx(plain.history[0][key], rel=1e-4), key

    model, _ = load_detector(fast.checkpoint)  # the checkpoint loads into an ordinary detector
    image = torch.rand(3, 96, 96)
    with torch.no_grad():
        ours, theirs = fast.model.eval()([image])[0], model.eval()([image])[0]
    torch.testing.assert_close(ours["scores"], theirs["scores"], rtol=1e-4, atol=1e-5)
