"""carve: lightweight vision backbones, hardware-aware search, training, detection transfer, compression."""

__version__ = "0.1.0"

from . import zoo  # noqa: E402,F401  (registers the zoo with timm on import)
