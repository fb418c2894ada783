"""Cut a spec into the parts a latency table stores: stem, each block, head, with feature sizes."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any

from torch import nn

from carve.zoo import ArchSpec, CarveNet


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
    """Output size of a conv (or the stem pool) with carve's padding rules."""
    if padding == "same":
        return math.ceil(size / stride)
    return (size + 2 * (kernel // 2) - kernel) // stride + 1


def decompose(spec: ArchSpec, input_size: int, batch: int = 1) -> list[Part]:
    """The stem, every block and the head of ``spec``, each keyed by configuration and input size."""
    st, pad = spec.stem, spec.padding
    parts = [Part("stem", dict(cin=spec.in_channels, cout=st.channels, kernel=st.kernel, stride=st.stride,
                               act=st.act, pool=st.pool, padding=pad, size=input_size, batch=batch),
                  spec.in_channels, input_size)]
    size = conv_out(input_size, st.kernel, st.stride, pad)
    if st.pool:
        size = conv_out(size, 3, 2, "symmetric")
    cin = st.channels
    for b in spec.blocks:
        se = None if b.se is None else dict(channels=b.se.channels, act=b.se.act, gate=b.se.gate, norm=b.se.norm)
        config = dict(kind=b.kind, cin=cin, cout=b.out_channels, mid=b.mid_channels, kernel=b.kernel,
                      stride=b.stride, act=b.act, dw_act=b.dw_activation, se=se,
                      se_before_dw_act=b.se_before_dw_act, pw_act=b.pw_act, skip=b.skip, padding=pad, size=size,
                      batch=batch)
        parts.append(Part("block", config, cin, size))
        size, cin = conv_out(size, b.kernel, b.stride, pad), b.out_channels
    h = spec.head
    parts.append(Part("head", dict(cin=cin, conv=h.conv_channels, conv_act=h.conv_act, fc=h.fc_channels,
                                   fc_act=h.fc_act, classes=h.num_classes, size=size, batch=batch), cin, size))
    return parts


def part_modules(spec: ArchSpec) -> list[nn.Module]:
    """Modules for ``decompose(spec)``, in the same order, taken from the built network itself."""
    net = CarveNet(spec).eval()
    mods: list[nn.Module] = [nn.Sequential(net.stem, net.stem_pool)]
    mods += [block for stage in net.blocks for block in stage]
    mods.append(nn.Sequential(net.head_conv, net.global_pool, net.head_fc, net.head_drop, net.classifier))
    return mods
