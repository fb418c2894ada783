import shutil
from pathlib import Path

import pytest
import torch

from carve.finetune import ClassifyConfig, DetectConfig, classify, detect, load_detector
from carve.finetune.peft_files import load_peft, read_peft_metadata
from carve.train import load_checkpoint
from carve.zoo import create_model

CIFAR = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "cifar10"


@pytest.fixture
def cifar64(tmp_path: Path) -> Path:
    """64 CIFAR-10 images: 16 training and 16 validation images of two classes."""
    if not CIFAR.is_dir():
        pytest.skip(f"cifar10 not found at {CIFAR}")
    for split, src in (("train", "train"), ("val", "test")):
        for cls in ("cat", "ship"):
            dst = tmp_path / "data" / split / cls
            dst.mkdir(parents=True)
            for f in sorted((CIFAR / src / cls).iterdir())[:16]:
                shutil.copy(f, dst / f.name)
    return tmp_path / "data"


@pytest.fixture
def pretrained(tmp_path: Path) -> str:
    """A base weights file standing in for pretrained ones (the base every test loads onto)."""
    from carve.zoo import save_weights

    torch.manual_seed(7)
    return str(save_weights(create_model("carve_075"), tmp_path / "base.safetensors"))


def _base(pretrained: str, classes: int = 2, name: str = "carve_075") -> torch.nn.Module:
    return create_model(name, pretrained=pretrained if name == "carve_075" else False, num_classes=classes)


def _config(data: Path, out: Path, pretrained: str, **kw) -> ClassifyConfig:
    base = dict(model="carve_075", pretrained=pretrained, data=str(data), out_dir=str(out), epochs=1, batch_size=16,
                workers=0,
                progress=False, tensorboard=False, seed=0, peft="lora:r=4", lr=0.2, warmup_epochs=0)
    return ClassifyConfig(**dict(base, **kw))


def test_lora_classify_writes_trainable_only_weights_that_load_back(cifar64: Path, tmp_path: Path,
                                                                   pretrained: str) -> None:
    res = classify(_config(cifar64, tmp_path / "run", pretrained))
    assert res.peft is not None and 0 < res.trainable_fraction < 0.1
    assert res.trainable_params == res.peft.counts["trainable"]
    meta = read_peft_metadata(res.peft_weights)
    assert meta["peft"].startswith("lora:r=4") and meta["base"]["name"] == "carve_075"
    assert len(meta["base"]["weights_sha256"]) == 64
    from safetensors.torch import load_file

    held = load_file(str(res.peft_weights))
    assert all(".lora_" in k or k.startswith("classifier.") for k in held)
    ckpt = load_checkpoint(tmp_path / "run" / "last.pt")
    assert ckpt["trainable_only"] and set(ckpt["model"]) == set(held) and ckpt["base"] == meta["base"]
    # the merged model is the plain deployable one (what export, latency and compress take)
    deployed = create_model(res.weights).eval()
    x = torch.randn(3, 3, 32, 32)
    reloaded = load_peft(res.peft_weights, _base(pretrained)).eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(x), deployed(x), atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(res.model.eval()(x), deployed(x))


def test_loading_on_another_base_says_what_differs(cifar64: Path, tmp_path: Path, pretrained: str) -> None:
    res = classify(_config(cifar64, tmp_path / "run", pretrained, peft="adapter:reduction=8"))
    assert res.weights == res.peft_weights  # adapters stay layers: the adapted model is what deploys
    torch.manual_seed(123)  # other random weights: same architecture, another base
    with pytest.raises(ValueError, match="another base model.*weights_sha256"):
        load_peft(res.peft_weights, create_model("carve_075", num_classes=2))
    with pytest.raises(ValueError, match="name carve_075 there, mobilenet_v3_small_075 here"):
        load_peft(res.peft_weights, create_model("mobilenet_v3_small_075", num_classes=2))
    reloaded = load_peft(res.peft_weights, _base(pretrained)).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(reloaded(x), res.model.eval()(x))
    with pytest.raises(ValueError, match="do not fit the model given"):  # the right base, a 3-class head
        load_peft(res.peft_weights, _base(pretrained, classes=3))
    # resuming with another method is refused by name, not loaded half-way
    with pytest.raises(ValueError, match="other trainable tensors"):
        classify(_config(cifar64, tmp_path / "run", pretrained, peft="lora:r=4", resume=True))
    with pytest.raises(ValueError, match="holds only trainable parameters"):
        classify(_config(cifar64, tmp_path / "run", pretrained, peft=None, resume=True))


@pytest.mark.parametrize("method", ["lora:r=2,targets=all", "adapter"])
def test_detect_with_peft_trains_a_step_and_its_checkpoint_loads(raccoon_subset: Path, tmp_path: Path,
                                                                 method: str) -> None:
    from carve.zoo import save_weights

    base = save_weights(create_model("mobilenet_v3_small_075"), tmp_path / "base.safetensors")
    cfg = DetectConfig(backbone="mobilenet_v3_small_075", pretrained=str(base), data=str(raccoon_subset),
                       out_dir=str(tmp_path / "d"),
                       img_size=96, batch_size=3, epochs=1, max_steps=1, progress=False, tensorboard=False,
                       examples=0, warmup_epochs=0, split="train", val_split="val", peft=method)
    res = detect(cfg)
    assert res.history[0]["step"] == 1 and res.peft is not None
    assert 0 < res.trainable_params < res.total_params
    body = [n for n, _ in res.model.named_parameters() if ".body." in n]
    if method.startswith("lora"):
        assert body and not any("lora_" in n for n in body)  # merged for deployment
    else:
        assert any(".adapter." in n for n in body) and res.peft_weights.is_file()
    model, meta = load_detector(res.checkpoint)
    assert meta["trainable_only"]
    x = [torch.rand(3, 96, 96)]
    with torch.no_grad():
        a, b = model.eval()(x)[0], res.model.eval()(x)[0]
    torch.testing.assert_close(a["scores"], b["scores"], atol=1e-4, rtol=1e-4)
    torch.manual_seed(5)  # another pretrained file under the same path: the checkpoint refuses it
    save_weights(create_model("mobilenet_v3_small_075"), base)
    with pytest.raises(ValueError, match="another base model: weights_sha256"):
        load_detector(res.checkpoint)


@pytest.mark.slow  # three short runs
def test_a_lora_run_resumes_exactly_after_a_crash(cifar64: Path, tmp_path: Path, pretrained: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from safetensors.torch import load_file

    from carve.train import loop

    straight = classify(_config(cifar64, tmp_path / "a", pretrained, epochs=2))
    real = loop.train_one_epoch

    def crash_in_second_epoch(state, model, loader, loss_fn):
        if state.epoch == 1:
            raise KeyboardInterrupt
        return real(state, model, loader, loss_fn)

    monkeypatch.setattr(loop, "train_one_epoch", crash_in_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        classify(_config(cifar64, tmp_path / "b", pretrained, epochs=2))
    monkeypatch.setattr(loop, "train_one_epoch", real)
    resumed = classify(_config(cifar64, tmp_path / "b", pretrained, epochs=2, resume=True))
    a, b = load_file(str(straight.peft_weights)), load_file(str(resumed.peft_weights))
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)
