"""A weight-sharing supernet: the largest sub-network of an ``ElasticSpace``, able to run any smaller one.

``Supernet`` is a ``CarveNet`` of the space's largest spec. ``set_active(spec)`` makes ``forward``
run a sub-network with the supernet's own weights: the leading channels of every layer and the
centre of every depthwise kernel (Once-for-All's elastic width, expansion and kernel), the first
blocks of every stage (elastic depth). ``extract`` copies those same slices into an ordinary
``CarveNet`` built by ``create_model(spec)``, so the two compute the same function. Files are carve
safetensors (the largest spec in the metadata, plus the space), so ``create_model`` reads a
supernet file as its largest sub-network.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from .elastic import ElasticSpace, elastic_space, space_from_dict, subnetwork_plan
from .layers import ConvNormAct
from .model import CarveNet
from .residual import has_skip
from .spec import ArchSpec, BlockSpec
from .subnets import SubnetError
from .weights import WeightsError, load_state_dict_strict, read_weights_file

SHIPPED_NAME = "carve_supernet"  # the shipped supernet's name under its tag (carve:tiny-imagenet)


class Supernet(CarveNet):
    """The largest sub-network of ``space`` (a name such as ``carve``, or an ``ElasticSpace``); its
    ``forward`` runs the active sub-network (``set_active``; the largest until set)."""

    def __init__(self, space: ElasticSpace | str = "carve", num_classes: int | None = None):
        space = elastic_space(space, num_classes)
        super().__init__(space.largest())
        self.space = space
        self.active: ArchSpec = self.spec
        self._plan: list[tuple[int, int]] = subnetwork_plan(self.spec, self.spec)

    def largest(self) -> ArchSpec:
        return self.space.largest()

    def smallest(self) -> ArchSpec:
        return self.space.smallest()

    def sample(self, rng: Any) -> ArchSpec:
        """A random sub-network spec (``rng``: a ``random.Random`` or a seed)."""
        return self.space.sample(rng)

    def fit_spec(self, spec: ArchSpec) -> ArchSpec:
        """``spec`` predicting the supernet's classes, checked to be a sub-network (``SubnetError`` if not)."""
        spec = spec.with_num_classes(self.spec.head.num_classes)
        subnetwork_plan(self.spec, spec)
        return spec

    def set_active(self, spec: ArchSpec | None) -> ArchSpec:
        """Make ``forward`` run ``spec`` (None: the largest); returns it with the supernet's classes."""
        spec = self.spec if spec is None else spec.with_num_classes(self.spec.head.num_classes)
        self._plan = subnetwork_plan(self.spec, spec)
        self.active = spec
        return spec

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """Replace the classifier (its sub-networks then predict ``num_classes``); the largest becomes active."""
        super().reset_classifier(num_classes, global_pool)
        self.space = self.space.with_num_classes(num_classes)
        self.set_active(None)

    # -- the active sub-network's forward ---------------------------------------------------------
    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        spec = self.active
        st = spec.stem
        x = _conv_norm_act(self.stem, x, st.channels, st.kernel, st.stride)
        x = self.stem_pool(x)
        cin = st.channels
        for b, (si, bi) in zip(spec.blocks, self._plan):
            module = self.blocks[si][bi]
            if b.kind == "conv":
                x = _conv_norm_act(module, x, b.out_channels, b.kernel, b.stride)
            else:
                x = _inverted_residual(module, b, x, cin)
            cin = b.out_channels
        if spec.head.conv_channels:
            x = _conv_norm_act(self.head_conv, x, spec.head.conv_channels, 1, 1)
        return x

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        h = self.active.head
        x = self.global_pool(x)
        if h.fc_channels:
            linear, act = self.head_fc[0], self.head_fc[1]
            x = act(F.linear(x, linear.weight[: h.fc_channels, : x.shape[1]], linear.bias[: h.fc_channels]))
        x = self.head_drop(x)
        if pre_logits or not self.num_classes:
            return x
        return F.linear(x, self.classifier.weight[:, : x.shape[1]], self.classifier.bias)


def _norm(bn: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """BatchNorm over the leading channels (training-mode statistics update those channels only)."""
    if not isinstance(bn, nn.BatchNorm2d):
        return x
    c = x.shape[1]
    factor = 0.0
    if bn.training and bn.track_running_stats:
        bn.num_batches_tracked.add_(1)
        factor = 1.0 / float(bn.num_batches_tracked) if bn.momentum is None else bn.momentum
    return F.batch_norm(x, bn.running_mean[:c], bn.running_var[:c], bn.weight[:c], bn.bias[:c],
                        bn.training or not bn.track_running_stats, factor, bn.eps)


def _kernel(weight: torch.Tensor, cout: int, cin: int, kernel: int) -> torch.Tensor:
    full = weight.shape[-1]
    lo = (full - kernel) // 2
    return weight[:cout, :cin, lo:lo + kernel, lo:lo + kernel]


def _conv_norm_act(module: ConvNormAct, x: torch.Tensor, cout: int, kernel: int, stride: int,
                   depthwise: bool = False, act: bool = True) -> torch.Tensor:
    conv = module.conv
    cin = x.shape[1]
    weight = _kernel(conv.weight, cin if depthwise else cout, 1 if depthwise else cin, kernel)
    bias = conv.bias[: weight.shape[0]] if conv.bias is not None else None
    x = F.conv2d(x, weight, bias, stride, kernel // 2, 1, cin if depthwise else 1)
    x = _norm(module.bn, x)
    return module.act(x) if act and module._acts else x


def _inverted_residual(module: nn.Module, b: BlockSpec, x: torch.Tensor, cin: int) -> torch.Tensor:
    shortcut = x
    mid = b.mid_channels or cin
    y = _conv_norm_act(module.conv_pw, x, mid, 1, 1) if mid != cin else x
    y = _conv_norm_act(module.conv_dw, y, mid, b.kernel, b.stride, depthwise=True)
    if b.se is not None:
        se = module.se
        s = y.mean((2, 3), keepdim=True)
        s = F.conv2d(s, se.fc1.weight[: b.se.channels, :mid], se.fc1.bias[: b.se.channels])
        s = se.act(_norm(se.bn, s))
        s = F.conv2d(s, se.fc2.weight[:mid, : b.se.channels], se.fc2.bias[:mid])
        y = y * se.gate(s)
    if b.se_before_dw_act:
        y = module.act_dw(y)
    y = _conv_norm_act(module.conv_pwl, y, b.out_channels, 1, 1, act=False)
    if not has_skip(b, cin):
        return y
    if module._drops:
        y = module.drop_path(y)
    if cin != b.out_channels:
        return torch.cat([y[:, :cin] + shortcut, y[:, cin:]], dim=1)
    return y + shortcut


# -- sub-networks as ordinary models ----------------------------------------------------------------

def _slice(tensor: torch.Tensor, shape: torch.Size, key: str) -> torch.Tensor:
    """The leading part of ``tensor`` along every axis, the centre along a conv's two kernel axes."""
    index = []
    for axis, (have, want) in enumerate(zip(tensor.shape, shape)):
        if want > have:
            raise SubnetError(f"{key}: needs {tuple(shape)}, the supernet holds {tuple(tensor.shape)}")
        lo = (have - want) // 2 if tensor.dim() == 4 and axis >= 2 else 0
        index.append(slice(lo, lo + want))
    return tensor[tuple(index)]


def _source_key(key: str, plan: dict[tuple[int, int], tuple[int, int]]) -> str:
    parts = key.split(".")
    if parts[0] == "blocks":
        si, bj = plan[(int(parts[1]), int(parts[2]))]
        parts[1:3] = [str(si), str(bj)]
    return ".".join(parts)


def subnetwork_state(supernet: Supernet, spec: ArchSpec, model: nn.Module | None = None) -> dict[str, torch.Tensor]:
    """The weights of sub-network ``spec`` (keys and shapes of ``CarveNet(spec)``), copied from ``supernet``."""
    spec = supernet.fit_spec(spec)
    plan = subnetwork_plan(supernet.spec, spec)
    names = [(si, bi) for si, st in enumerate(spec.stages) for bi in range(len(st.blocks))]
    where = dict(zip(names, plan))
    source = supernet.state_dict()
    target = (model if model is not None else CarveNet(spec)).state_dict()
    out = {}
    for key, t in target.items():
        s = source[_source_key(key, where)]
        out[key] = _slice(s, t.shape, key).clone().contiguous() if t.dim() else s.clone()
    return out


def extract(supernet: Supernet, spec: ArchSpec) -> CarveNet:
    """Sub-network ``spec`` as an ordinary carve model (``create_model(spec)``, weights strict-loaded),
    in the supernet's train/eval mode, computing what the supernet computes with ``spec`` active."""
    from .factory import create_model

    spec = supernet.fit_spec(spec)
    model = create_model(spec)
    load_state_dict_strict(model, subnetwork_state(supernet, spec, model), f"sub-network {spec.name} of the supernet")
    model.train(supernet.training)
    model.pretrained_cfg = dict(getattr(supernet, "pretrained_cfg", {}) or {}, supernet=supernet.space.name)
    return model.to(next(supernet.parameters()).device)


@torch.no_grad()
def implant(supernet: Supernet, model: nn.Module) -> None:
    """Write a sub-network's weights (``model.spec`` must be one) into the supernet's slices, in place.

    A smaller kernel goes to the centre of the supernet's, and the ring around it is zeroed, so the
    supernet's larger-kernel sub-networks start computing what ``model`` computes there.
    """
    spec = supernet.fit_spec(model.spec)
    plan = subnetwork_plan(supernet.spec, spec)
    names = [(si, bi) for si, st in enumerate(spec.stages) for bi in range(len(st.blocks))]
    where = dict(zip(names, plan))
    source = supernet.state_dict()
    for key, t in model.state_dict().items():
        s = source[_source_key(key, where)]
        if not t.dim():
            continue
        if s.dim() == 4 and s.shape[-1] > t.shape[-1]:
            _slice(s, (t.shape[0], t.shape[1]) + s.shape[2:], key).zero_()
        _slice(s, t.shape, key).copy_(t)


# -- files ---------------------------------------------------------------------------------------

def save_supernet(supernet: Supernet, path: str | Path, metrics: Mapping[str, Any] | None = None) -> Path:
    """Write the supernet as carve safetensors: the largest spec and the space in the metadata (atomic)."""
    from safetensors.torch import save

    from carve.files import write_atomic

    meta = {"format": "carve", "spec": supernet.spec.to_json(indent=None),
            "supernet": json.dumps(supernet.space.to_dict())}
    if metrics:
        meta["metrics"] = json.dumps(dict(metrics))
    state = {k: v.detach().contiguous().cpu() for k, v in supernet.state_dict().items()}
    return write_atomic(path, save(state, metadata=meta))


def _locate(file_or_tag: str | Path) -> tuple[Path, dict[str, Any] | None]:
    """The supernet's file, and the space its shipped manifest record holds (None for a plain file)."""
    text = str(file_or_tag)
    if not Path(text).suffix and ":" in text:
        from .shipped import record, shipped_file

        return shipped_file(text, SHIPPED_NAME), record(text, SHIPPED_NAME).get("space")
    path = Path(text)
    if not path.is_file():
        raise WeightsError(f"supernet file not found: {path}")
    return path, None


def _space_data(path: Path, meta: Mapping[str, Any], shipped: dict[str, Any] | None) -> dict[str, Any]:
    data = meta.get("supernet", shipped)
    if isinstance(data, str):
        data = json.loads(data)
    if not isinstance(data, dict):
        raise WeightsError(f"{path}: holds no supernet space (a carve model file, not a supernet's?)")
    return data


def supernet_space(file_or_tag: str | Path) -> ElasticSpace:
    """The space of a saved or shipped supernet, read from its metadata only (no weights loaded)."""
    path, shipped = _locate(file_or_tag)
    meta: dict[str, Any] = {}
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as f:
                meta = dict(f.metadata() or {})
        except Exception as exc:  # safetensors' SafetensorError
            raise WeightsError(f"{path}: not a readable .safetensors file: {exc}") from None
    space = space_from_dict(_space_data(path, meta, shipped), f"{path}: supernet")
    classes = json.loads(meta["spec"])["head"]["num_classes"] if "spec" in meta else None
    return space.with_num_classes(classes) if classes is not None else space


def load_supernet(file_or_tag: str | Path) -> Supernet:
    """A supernet from a file written by ``save_supernet``, or shipped weights by tag (``carve:tiny-imagenet``)."""
    path, shipped = _locate(file_or_tag)
    state, meta = read_weights_file(path)
    space = space_from_dict(_space_data(path, meta, shipped), f"{path}: supernet")
    head = state.get("classifier.weight")
    supernet = Supernet(space, num_classes=int(head.shape[0]) if head is not None else None)
    load_state_dict_strict(supernet, state, str(path))
    supernet.pretrained_cfg = dict(getattr(supernet, "pretrained_cfg", {}) or {}, file=str(path),
                                   metrics=meta.get("metrics"))
    return supernet
