"""Structured channel pruning of any ``nn.Module`` (no spec) with Torch-Pruning's dependency graph.

``prune_graph`` prunes a copy of a user's model or a detector to a fraction of its MACs or a
channel ratio; the layers whose outputs the model returns (a classifier, a detector's box and
class predictors) keep all their outputs. A pruned model has no spec to rebuild it from, so
``save_graph_pruned`` writes its weights (safetensors) and each pruned layer's new shape (JSON),
and ``load_graph_pruned`` shrinks a freshly built original to those shapes and strict-loads.
"""

from __future__ import annotations

import copy
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import torch
from torch import nn

from carve.files import read_text, write_atomic, write_json
from carve.zoo import count_params

from .pruning import PruneError, accumulate_gradients, check_ratio, conv_macs

IMPORTANCES = ("l1", "l2", "taylor")
FORMAT = "carve-graph-pruned-1"
SHAPE_ATTRS = ("in_channels", "out_channels", "groups", "in_features", "out_features", "num_features",
               "normalized_shape", "num_groups", "num_channels", "num_parameters")
MAX_RATIO = 0.9  # channels removed at most when pruning to a MACs target
STEP = 0.01  # channel ratio added per pruning step towards a MACs target


@dataclass
class GraphPruneResult:
    """The pruned copy, its cost before and after, the layers kept whole and each changed layer's shapes."""

    model: nn.Module
    params_before: int
    params_after: int
    macs_before: int
    macs_after: int
    ratio: float  # channel ratio the last step pruned to
    kept_whole: list[str] = field(default_factory=list)
    layers: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def macs_fraction(self) -> float:
        return self.macs_after / max(self.macs_before, 1)


def prune_graph(model: nn.Module, example_input: torch.Tensor, *, target_macs: float | None = None,
                ratio: float | None = None, importance: str = "l2", round_to: int = 8, ignored: Sequence[str] = (),
                data: Iterable | None = None) -> GraphPruneResult:
    """Prune a copy of ``model`` by whole channels over its traced dependency graph.

    Give one target: ``target_macs`` (fraction of the MACs counted on ``example_input`` to keep;
    pruned in steps of 1 % of the channels until met) or ``ratio`` (fraction of channels removed
    per layer). ``importance``: l1, l2 or taylor (needs ``data``: (images, labels) batches of a
    classifier). ``ignored``: module names whose outputs are kept, besides every layer whose
    output reaches the model's output unconsumed (classifier, detection predictors).
    """
    tp = _check(model, example_input, target_macs, ratio, importance, round_to, ignored, data)
    pruned = copy.deepcopy(model).eval()
    names = {m: n for n, m in pruned.named_modules()}
    before_shapes = _shapes(pruned)
    with torch.no_grad():
        reference = _form(pruned(example_input))
    macs_before, params_before = conv_macs(pruned, example=example_input), count_params(pruned)
    if importance == "taylor":
        accumulate_gradients(pruned, data)
    steps = 1 if ratio is not None else round(MAX_RATIO / STEP)
    trace = _trace_options(pruned)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Maximum recursive depth")
        try:
            # the outputs are found on a first trace: grouping them with the rest is slow (a detector's
            # post-processing ties every predictor together) and they are never pruned
            outputs = output_layers(tp.DependencyGraph().build_dependency(pruned, example_inputs=example_input,
                                                                          **trace))
            pruner = tp.pruner.MetaPruner(
                pruned, example_input, importance=_importance(tp, importance), **trace,
                pruning_ratio=ratio if ratio is not None else MAX_RATIO, iterative_steps=steps,
                ignored_layers=[*outputs, *(pruned.get_submodule(n) for n in ignored)],
                round_to=round_to if round_to > 1 else None)
            macs, step = macs_before, 0
            while step < steps and (ratio is not None or macs > target_macs * macs_before):
                pruner.step()
                step += 1
                macs = conv_macs(pruned, example=example_input)
        except Exception as exc:  # the library's own failures (an op it cannot map) carry no argument name
            raise PruneError(f"model: torch-pruning could not prune this graph ({type(exc).__name__}: {exc}); "
                             f"a carve model with a spec prunes with carve.compress.prune") from exc
    if importance == "taylor":
        pruned.zero_grad(set_to_none=True)
    if target_macs is not None and macs > target_macs * macs_before:
        raise PruneError(f"target_macs: {target_macs} of the original MACs is out of reach even with "
                         f"{MAX_RATIO:.0%} of the channels removed ({macs / macs_before:.3f} left)")
    with torch.no_grad():
        form = _form(pruned(example_input))
    if form != reference:
        raise PruneError(f"ignored: pruning changed the model's outputs from {reference} to {form}; name the "
                         f"layers that write them in ignored=")
    layers = {**getattr(model, "pruned_layers", {}), **_changed(pruned, before_shapes)}  # shapes since the original
    pruned.pruned_layers = layers
    pruned.train(model.training)
    return GraphPruneResult(model=pruned, params_before=params_before, params_after=count_params(pruned),
                            macs_before=macs_before, macs_after=macs, ratio=round(step / steps * MAX_RATIO, 4)
                            if ratio is None else ratio, kept_whole=sorted({names[m] for m in outputs} | set(ignored)),
                            layers=layers)


def output_layers(graph: Any) -> list[nn.Module]:
    """Convolutions and linears whose output reaches the model's output before any layer consumes its
    channels (a depthwise convolution passes them through); pruning their outputs would change it."""
    mixing = (nn.modules.conv._ConvNd, nn.Linear)
    found = []
    for module, node in graph.module2node.items():
        if not isinstance(module, mixing):
            continue
        todo, seen = list(node.outputs), set()
        while todo:
            nxt = todo.pop()
            if id(nxt) in seen:
                continue
            seen.add(id(nxt))
            if isinstance(nxt.module, mixing) and not _depthwise(nxt.module):
                continue
            if not nxt.outputs:
                found.append(module)
                break
            todo.extend(nxt.outputs)
        else:
            if not node.outputs:
                found.append(module)
    return found


def save_graph_pruned(model: nn.Module, path: str | Path, layers: dict[str, dict] | None = None) -> Path:
    """Write ``model``'s weights to ``path`` (safetensors) and its pruned layers' shapes beside it
    (``path`` with ``.json``); ``layers`` defaults to what ``prune_graph`` attached to the model."""
    from safetensors.torch import save

    layers = layers if layers is not None else getattr(model, "pruned_layers", None)
    if layers is None:
        raise PruneError("layers: the model carries no pruned-layer record (prune it with prune_graph or pass "
                         "layers=result.layers)")
    path = Path(path)
    if path.suffix != ".safetensors":
        raise PruneError(f"path: expected a .safetensors file name, got {path}")
    state = {k: v.detach().contiguous().clone().cpu() for k, v in model.state_dict().items()}
    write_atomic(path, save(state, metadata={"format": FORMAT}))
    write_json(path.with_suffix(".json"), {"format": FORMAT, "weights": path.name, "layers": layers})
    return path


def load_graph_pruned(path: str | Path, build_fn: Callable[[], nn.Module]) -> nn.Module:
    """The model ``build_fn`` builds (the original architecture), its layers shrunk to the shapes
    recorded beside ``path``, with the weights of ``path`` strictly loaded; in eval mode."""
    from safetensors.torch import load_file

    path = Path(path)
    record_path = path.with_suffix(".json")
    for p in (path, record_path):
        if not p.is_file():
            raise FileNotFoundError(f"path: {p} not found (save_graph_pruned writes the .safetensors and .json pair)")
    record = json.loads(read_text(record_path))
    if not isinstance(record, dict) or record.get("format") != FORMAT or not isinstance(record.get("layers"), dict):
        raise PruneError(f"{record_path}: not a graph-pruned layer record (expected format {FORMAT!r})")
    model = build_fn()
    if not isinstance(model, nn.Module):
        raise PruneError(f"build_fn: expected a function returning the original nn.Module, got {type(model).__name__}")
    for name, layer in record["layers"].items():
        _shrink(model, name, layer, record_path)
    try:
        model.load_state_dict(load_file(str(path)), strict=True)
    except RuntimeError as exc:
        raise PruneError(f"{path}: the weights do not fit the model with the recorded shapes: {exc}") from None
    model.pruned_layers = record["layers"]
    return model.eval()


# -- helpers --------------------------------------------------------------------------------------------

def _check(model: Any, example_input: Any, target_macs: Any, ratio: Any, importance: str, round_to: Any,
           ignored: Sequence[str], data: Any) -> Any:
    if not isinstance(model, nn.Module):
        raise PruneError(f"model: expected an nn.Module, got {type(model).__name__}")
    if not isinstance(example_input, torch.Tensor):
        raise PruneError(f"example_input: expected a tensor batch (e.g. torch.zeros(1, 3, 224, 224)), "
                         f"got {type(example_input).__name__}")
    if (target_macs is None) == (ratio is None):
        raise PruneError("target: give exactly one of target_macs, ratio")
    if ratio is not None:
        check_ratio(ratio)
    elif not isinstance(target_macs, (int, float)) or not 0 < target_macs <= 1:
        raise PruneError(f"target_macs: the fraction of the original MACs to keep must be in (0, 1], got {target_macs!r}")
    if importance not in IMPORTANCES:
        raise PruneError(f"importance: expected one of {list(IMPORTANCES)}, got {importance!r}")
    if importance == "taylor" and data is None:
        raise PruneError("data: importance='taylor' needs data= (an iterable of (images, labels) batches)")
    if not isinstance(round_to, int) or isinstance(round_to, bool) or round_to < 1:
        raise PruneError(f"round_to: expected an integer >= 1, got {round_to!r}")
    if isinstance(ignored, str):
        raise PruneError(f"ignored: expected a sequence of module names, got the string {ignored!r}")
    names = dict(model.named_modules())
    for i, name in enumerate(ignored):
        if name not in names or not name:
            raise PruneError(f"ignored[{i}]: no module named {name!r} in the model")
    import torch_pruning as tp

    return tp


def _importance(tp: Any, name: str) -> Any:
    if name == "taylor":
        return tp.importance.GroupTaylorImportance()
    return tp.importance.GroupMagnitudeImportance(p=1 if name == "l1" else 2)


def is_detector(model: nn.Module, single_stage: bool = False) -> bool:
    """Whether ``model`` is a torchvision detector (``single_stage``: SSD, RetinaNet or FCOS only)."""
    from torchvision.models.detection.fcos import FCOS
    from torchvision.models.detection.generalized_rcnn import GeneralizedRCNN
    from torchvision.models.detection.retinanet import RetinaNet
    from torchvision.models.detection.ssd import SSD

    return isinstance(model, (SSD, RetinaNet, FCOS) if single_stage else (SSD, RetinaNet, FCOS, GeneralizedRCNN))


def _trace_options(model: nn.Module) -> dict[str, Any]:
    """How to trace a torchvision single-stage detector: backbone then head, up to the raw predictions
    (tracing through box decoding and NMS is ten times slower and ties all predictors together)."""
    if not is_detector(model, single_stage=True):
        return {}

    def raw(m: nn.Module, x: torch.Tensor) -> Any:
        return m.head(list(m.backbone(m.transform(list(x))[0].tensors).values()))

    return dict(forward_fn=raw, output_transform=lambda out: list(out.values()))


def _depthwise(module: nn.Module) -> bool:
    return isinstance(module, nn.modules.conv._ConvNd) and module.groups > 1 and module.groups == module.in_channels


def _form(out: Any) -> Any:
    """The structure of an output: containers kept, tensors as (dtype, shape after the first dim)."""
    if isinstance(out, torch.Tensor):
        return (str(out.dtype), tuple(out.shape[1:]))
    if isinstance(out, dict):
        return {k: _form(v) for k, v in out.items()}
    if isinstance(out, (list, tuple)):
        return [_form(v) for v in out]
    return type(out).__name__


def _layer_shapes(module: nn.Module) -> dict[str, Any]:
    attrs = {a: list(v) if isinstance(v, tuple) else v for a in SHAPE_ATTRS
             if isinstance(v := getattr(module, a, None), (int, tuple))}
    tensors = {n: list(t.shape) for n, t in [*module.named_parameters(recurse=False),
                                               *module.named_buffers(recurse=False)] if t is not None}
    return dict(type=type(module).__name__, attrs=attrs, tensors=tensors)


def _shapes(model: nn.Module) -> dict[str, dict[str, Any]]:
    return {name: _layer_shapes(m) for name, m in model.named_modules()}


def _changed(model: nn.Module, before: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    now = _shapes(model)
    return {name: shapes for name, shapes in now.items() if shapes != before.get(name)}


def _shrink(model: nn.Module, name: str, layer: Any, where: Path) -> None:
    """Set one module's shape attributes and give its tensors the recorded shapes (values loaded after)."""
    try:
        module = model.get_submodule(name)
    except AttributeError:
        raise PruneError(f"{where}: layer {name!r} is not in the model build_fn returned") from None
    if not isinstance(layer, dict) or layer.get("type") != type(module).__name__:
        raise PruneError(f"{where}: layer {name!r} is a {type(module).__name__} in the model, recorded as "
                         f"{layer.get('type') if isinstance(layer, dict) else layer!r}")
    for attr, value in layer.get("attrs", {}).items():
        if attr not in SHAPE_ATTRS:
            raise PruneError(f"{where}: layer {name!r}: {attr!r} is not a shape attribute ({list(SHAPE_ATTRS)})")
        setattr(module, attr, tuple(value) if isinstance(value, list) else int(value))
    for tname, shape in layer.get("tensors", {}).items():
        old = getattr(module, tname, None)
        if not isinstance(old, torch.Tensor) or not all(isinstance(d, int) and d >= 0 for d in shape):
            raise PruneError(f"{where}: layer {name!r}: no tensor {tname!r} of shape {shape!r} to shrink")
        new = torch.empty(shape, dtype=old.dtype)
        setattr(module, tname, nn.Parameter(new, old.requires_grad) if isinstance(old, nn.Parameter) else new)


__all__ = ["IMPORTANCES", "GraphPruneResult", "is_detector", "load_graph_pruned", "output_layers", "prune_graph",
           "save_graph_pruned"]
