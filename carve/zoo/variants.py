"""Spec edits that derive a variant of an architecture (e.g. for small images)."""

from __future__ import annotations

from dataclasses import replace

from .spec import ArchSpec, SpecError, StageSpec
from .validation import validate


def for_small_images(spec: ArchSpec, strides_removed: int = 1) -> ArchSpec:
    """Return ``spec`` with the first ``strides_removed`` stride-2 layers set to stride 1.

    ImageNet-shaped backbones reduce 32 px inputs to 1x1; each removed stride keeps 2x more
    resolution (about 4x the compute). The stem pool counts as a stride and goes first.
    """
    if strides_removed < 0:
        raise SpecError("strides_removed", f"must be >= 0, got {strides_removed}")
    left = strides_removed
    stem = spec.stem
    if left and stem.pool:
        stem, left = replace(stem, pool=False), left - 1
    if left and stem.stride == 2:
        stem, left = replace(stem, stride=1), left - 1
    stages = []
    for stage in spec.stages:
        blocks = []
        for b in stage.blocks:
            if left and b.stride == 2:
                b, left = replace(b, stride=1), left - 1
                if b.kind in ("shuffle", "shuffle_v1"):
                    raise SpecError("strides_removed", f"a stride-2 {b.kind} unit changes width; "
                                                       "remove the stem strides only")
            blocks.append(b)
        stages.append(StageSpec(tuple(blocks)))
    if left:
        raise SpecError("strides_removed", f"the spec has fewer than {strides_removed} stride-2 layers")
    suffix = f"_s{strides_removed}" if strides_removed else ""
    return validate(replace(spec, name=spec.name + suffix, stem=stem, stages=tuple(stages)))
