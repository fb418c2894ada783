"""Cut a spec into the parts a latency table stores: stem, each block, head, with feature sizes."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from carve.zoo import ArchSpec, BlockSpec, CarveNet
from carve.zoo.mobileone import reparameterize


def _set(obj: object, defaults: dict[str, object], **names: str) -> dict[str, object]:
    """The fields of ``obj`` added after the first tables were written, where they differ from their
    defaults (keyed only when set, so the parts of earlier specs keep their keys and latencies).
    ``names`` maps a key to the field it reads (default: the key itself)."""
    out = {}
    for key, default in defaults.items():
        value = getattr(obj, names.get(key, key))
        if value != default:
            out[key] = value
    return out


@dataclass(frozen=True)
class Part:
    """One table entry: what it is (``config``), its canonical ``key`` and its input shape."""

    kind: str
    config: dict[str, Any]
    in_channels: int
    feature_size: int

    @property
    def key(self) -> str:
        return json.dumps(dict(part=self.kind, **self.config), sort_keys=True, separators=(",", ":"))

    @property
    def short_key(self) -> str:
        return "part:" + hashlib.sha256(self.key.encode()).hexdigest()[:16]


def conv_out(size: int, kernel: int, stride: int, padding: str) -> int:
    """Output size of a conv (or the stem pool) with carve's padding rules (``valid``: unpadded)."""
    if padding == "same":
        return math.ceil(size / stride)
    pad = 0 if padding == "valid" else kernel // 2
    return (size + 2 * pad - kernel) // stride + 1


def pool_out(size: int, pooling: str) -> int:
    """Output size of the 3x3/2 max pool: padded by one, or unpadded with the size rounded up."""
    if pooling == "ceil":
        return math.ceil((size - 3) / 2) + 1
    return conv_out(size, 3, 2, "symmetric")


def block_out(b: BlockSpec, size: int, padding: str, pooling: str = "pad") -> int:
    """Output size of a block: set by the layer that carries its stride."""
    if b.stride == 1:
        return size
    if b.kind == "fire":
        return pool_out(size, pooling)
    if b.kind == "uib":
        return conv_out(size, b.kernel or b.start_kernel or b.end_kernel, 2, padding)
    return conv_out(size, b.kernel, b.stride, padding)


def decompose(spec: ArchSpec, input_size: int, batch: int = 1) -> list[Part]:
    """The stem, every block and the head of ``spec``, each keyed by configuration and input size."""
    st, pad = spec.stem, spec.padding
    # the spec-wide settings of later families (no BN, Caffe pooling) key every part
    extra = {**_set(spec.norm, dict(norm="batch"), norm="kind"), **_set(spec, dict(pooling="pad"))}
    stem = dict(cin=spec.in_channels, cout=st.channels, kernel=st.kernel, stride=st.stride, act=st.act, pool=st.pool,
                padding=pad, size=input_size, batch=batch, **extra, **_set(st, dict(kind="conv", pad=True)))
    parts = [Part("stem", stem, spec.in_channels, input_size)]
    size = conv_out(input_size, st.kernel, st.stride, pad if st.pad else "valid")
    if st.pool:
        size = pool_out(size, spec.pooling)
    cin = st.channels
    for b in spec.blocks:
        se = None if b.se is None else dict(channels=b.se.channels, act=b.se.act, gate=b.se.gate, norm=b.se.norm)
        config = dict(kind=b.kind, cin=cin, cout=b.out_channels, mid=b.mid_channels, kernel=b.kernel,
                      stride=b.stride, act=b.act, dw_act=b.dw_activation, se=se,
                      se_before_dw_act=b.se_before_dw_act, pw_act=b.pw_act, skip=b.skip, padding=pad, size=size,
                      batch=batch, **extra,
                      **_set(b, dict(start_kernel=0, end_kernel=0, groups=1, first_groups=0, branches=1)))
        parts.append(Part("block", config, cin, size))
        size, cin = block_out(b, size, pad, spec.pooling), b.out_channels
    h = spec.head
    head = dict(cin=cin, conv=h.conv_channels, conv_act=h.conv_act, fc=h.fc_channels, fc_act=h.fc_act,
                classes=h.num_classes, size=size, batch=batch, **extra,
                **_set(h, dict(fc_norm=False, classifier="linear")))
    parts.append(Part("head", head, cin, size))
    return parts


class _Head(nn.Module):
    """The network's head as one module (whatever order its layers run in)."""

    def __init__(self, net: CarveNet):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.forward_head(self.net.head_conv(x))


def part_modules(spec: ArchSpec) -> list[nn.Module]:
    """Modules for ``decompose(spec)``, in the same order, taken from the built network itself in
    its inference form (re-parameterisable blocks deployed)."""
    net = CarveNet(spec).eval()
    reparameterize(net)
    mods: list[nn.Module] = [nn.Sequential(net.stem, net.stem_pool)]
    mods += [block for stage in net.blocks for block in stage]
    head = _Head(net)
    net.stem, net.blocks = nn.Identity(), nn.Sequential()  # the head part holds no body weights
    mods.append(head)
    return mods
