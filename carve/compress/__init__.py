"""Compression: fold, prune, quantize, factorise, export; one function per step, composable.

Every step takes and returns ``(model, spec)``; ``pipeline`` chains them and reports each.
"""

from .fold import fold, fuse_conv_bn
from .prune import PruneError, prune, pruned_spec

__all__ = ["PruneError", "fold", "fuse_conv_bn", "prune", "pruned_spec"]
