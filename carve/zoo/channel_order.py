"""Reorder a supernet's channels by importance, keeping its function: narrower sub-networks, which take
the leading channels of every layer, then take the most important ones (Once-for-All's channel sorting).

Channels are permuted in groups: every tensor axis that indexes the same channels (a conv's outputs,
its BatchNorm, the next convs' inputs, and across a stage the block outputs that residual additions
tie together) moves by one permutation, so the largest network computes exactly what it did.
"""

from __future__ import annotations

import torch

from .residual import has_skip
from .spec import ArchSpec
from .subnets import SubnetError

Ref = tuple[str, int, bool]  # (state-dict key, axis indexing the group's channels, writes them: counts for importance)
_BN = ("weight", "bias", "running_mean", "running_var")


def _bn(prefix: str) -> list[Ref]:
    return [(f"{prefix}.{n}", 0, False) for n in _BN]


def channel_groups(spec: ArchSpec) -> list[list[Ref]]:
    """Groups of tensor axes sharing their channels in ``CarveNet(spec)`` (inverted residuals and 1x1 convs)."""
    current: list[Ref] = [("stem.conv.weight", 0, True)] + _bn("stem.bn")
    groups = [current]
    cin = spec.stem.channels
    for si, stage in enumerate(spec.stages):
        for bi, b in enumerate(stage.blocks):
            p = f"blocks.{si}.{bi}"
            if b.kind == "conv" and b.kernel == 1:
                current.append((f"{p}.conv.weight", 1, False))
                current = [(f"{p}.conv.weight", 0, True)] + _bn(f"{p}.bn")
                groups.append(current)
            elif b.kind == "ir":
                mid = b.mid_channels or cin
                if mid != cin:
                    current.append((f"{p}.conv_pw.conv.weight", 1, False))
                    inner = [(f"{p}.conv_pw.conv.weight", 0, True)] + _bn(f"{p}.conv_pw.bn")
                    groups.append(inner)
                else:
                    inner = current
                inner += [(f"{p}.conv_dw.conv.weight", 0, True)] + _bn(f"{p}.conv_dw.bn")
                inner.append((f"{p}.conv_pwl.conv.weight", 1, False))
                if b.se is not None:
                    inner += [(f"{p}.se.fc1.weight", 1, False), (f"{p}.se.fc2.weight", 0, False),
                              (f"{p}.se.fc2.bias", 0, False)]
                    groups.append([(f"{p}.se.fc1.weight", 0, True), (f"{p}.se.fc1.bias", 0, False),
                                   (f"{p}.se.fc2.weight", 1, False)] + (_bn(f"{p}.se.bn") if b.se.norm else []))
                out = [(f"{p}.conv_pwl.conv.weight", 0, True)] + _bn(f"{p}.conv_pwl.bn")
                if has_skip(b, cin):
                    if cin != b.out_channels:
                        raise SubnetError(f"{p}: a partial skip ({cin} into {b.out_channels} channels) ties only part "
                                          "of the output; channels cannot be sorted across it")
                    current += out
                else:
                    current = out
                    groups.append(current)
            else:
                raise SubnetError(f"{p}: channel sorting handles inverted residuals and 1x1 conv blocks, not "
                                  f"{b.kind!r} (kernel {b.kernel})")
            cin = b.out_channels
    if spec.head.conv_channels:
        current.append(("head_conv.conv.weight", 1, False))
        current = [("head_conv.conv.weight", 0, True)] + _bn("head_conv.bn")
        groups.append(current)
    if spec.head.fc_channels:
        if spec.head.fc_norm:
            raise SubnetError("head.fc_norm: channel sorting handles a linear head layer only")
        current.append(("head_fc.0.weight", 1, False))
        current = [("head_fc.0.weight", 0, True), ("head_fc.0.bias", 0, False)]
        groups.append(current)
    if spec.head.num_classes:
        current.append(("classifier.weight", 1, False))
    return groups


def importance(state: dict[str, torch.Tensor], group: list[Ref]) -> torch.Tensor:
    """Per channel: the L1 norm of what each writing layer puts there, each layer divided by its mean, summed."""
    total = None
    for key, axis, writes in group:
        if not writes:
            continue
        w = state[key].detach().float().abs().transpose(0, axis).flatten(1).sum(1)
        w = w / (w.mean() + 1e-12)
        total = w if total is None else total + w
    return total


@torch.no_grad()
def sort_channels(supernet: torch.nn.Module) -> dict[int, torch.Tensor]:
    """Reorder the channels of ``supernet`` (a ``Supernet``, or any ``CarveNet`` of this shape) by
    importance, most important first, in place; the function of its largest network is unchanged.
    Optimizer state (momentum) indexed by the old order is stale afterwards. Returns the permutation
    of each group (by position in ``channel_groups``)."""
    state = supernet.state_dict()
    perms = {}
    for gi, group in enumerate(channel_groups(supernet.spec)):
        order = torch.argsort(importance(state, group), descending=True, stable=True)
        perms[gi] = order
        for key, axis, _ in group:
            t = state[key]
            t.copy_(t.index_select(axis, order.to(t.device)))
    return perms
