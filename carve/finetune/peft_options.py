"""The ``peft`` setting of a finetuning run: ``lora[:r=8,alpha=16,targets=pointwise|all]`` or ``adapter[:...]``.

Parsed into a typed :class:`PeftSettings`; a bad string raises ``ValueError`` naming the field
(``ClassifyConfig.peft``, ``--peft``) and what was expected.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

METHODS = ("lora", "adapter")
LORA_TARGETS = ("pointwise", "all")
# option -> (type, methods it applies to, rule text, check)
_OPTIONS: dict[str, tuple[type, tuple[str, ...], str, Any]] = {
    "r": (int, ("lora",), "an integer >= 1", lambda v: v >= 1),
    "alpha": (float, ("lora",), "a number > 0", lambda v: v > 0),
    "dropout": (float, ("lora", "adapter"), "a number in [0, 1)", lambda v: 0 <= v < 1),
    "targets": (str, ("lora",), f"one of {'|'.join(LORA_TARGETS)}", lambda v: v in LORA_TARGETS),
    "reduction": (int, ("adapter",), "an integer >= 1", lambda v: v >= 1),
}
SYNTAX = "lora[:r=8,alpha=16,dropout=0,targets=pointwise|all] or adapter[:reduction=4,dropout=0]"


@dataclass(frozen=True)
class PeftSettings:
    """A parameter-efficient method and its options.

    ``lora``: rank ``r`` updates scaled by ``alpha / r`` on the body's 1x1 convs (``targets=pointwise``)
    or on every dense conv and linear layer (``all``; depthwise and grouped convs are left out).
    ``adapter``: a zero-initialised bottleneck (``channels / reduction`` wide) after every block.
    """

    method: str
    r: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    targets: str = "pointwise"
    reduction: int = 4

    def to_text(self) -> str:
        """The canonical ``--peft`` string of these settings."""
        if self.method == "lora":
            return f"lora:r={self.r},alpha={self.alpha:g},dropout={self.dropout:g},targets={self.targets}"
        return f"adapter:reduction={self.reduction},dropout={self.dropout:g}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_peft(text: str | None, field: str = "peft") -> PeftSettings | None:
    """``None``/``""``/``none`` -> None; otherwise the settings ``text`` spells (see ``SYNTAX``)."""
    if text is None:
        return None
    if not isinstance(text, str):
        raise ValueError(f"{field}: expected a string such as {SYNTAX}, got {type(text).__name__}")
    text = text.strip()
    if text in ("", "none"):
        return None
    method, _, rest = text.partition(":")
    method = method.strip().lower()
    if method not in METHODS:
        raise ValueError(f"{field}: unknown method {method!r} in {text!r}; expected {SYNTAX}")
    values: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in rest.split(","))):
        key, eq, raw = item.partition("=")
        key, raw = key.strip(), raw.strip()
        if not eq or not raw:
            raise ValueError(f"{field}: expected key=value, got {item!r} in {text!r}")
        if key not in _OPTIONS or method not in _OPTIONS[key][1]:
            known = [k for k, opt in _OPTIONS.items() if method in opt[1]]
            raise ValueError(f"{field}: unknown {method} option {key!r} in {text!r}; expected one of {known}")
        if key in values:
            raise ValueError(f"{field}: option {key!r} given twice in {text!r}")
        kind, _, rule, ok = _OPTIONS[key]
        try:
            value = kind(raw)
        except ValueError:
            raise ValueError(f"{field}: {key} must be {rule}, got {raw!r}") from None
        if kind is int and "." in raw:
            raise ValueError(f"{field}: {key} must be {rule}, got {raw!r}")
        if not ok(value):
            raise ValueError(f"{field}: {key} must be {rule}, got {raw!r}")
        values[key] = value
    return PeftSettings(method, **values)
