"""``LatencyResult``: a latency figure with its spread, its conditions and the device's fingerprint."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class LatencyResult:
    """A latency figure (ms) with its spread, the conditions it was taken under and the device."""

    median_ms: float
    p10_ms: float
    p90_ms: float
    runs: int
    outliers: int
    conditions: dict[str, Any]
    fingerprint: dict[str, Any]
    mean_ms: float = 0.0
    outlier_ms: list[float] = field(default_factory=list)
    warmup_runs: int = 0
    first_call_ms: float = 0.0
    ci_rel: float = 0.0
    cached: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LatencyResult:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})

    def __str__(self) -> str:
        c = self.conditions
        return (f"{self.median_ms:.3f} ms median (p10 {self.p10_ms:.3f}, p90 {self.p90_ms:.3f}, {self.runs} runs, "
                f"{self.outliers} outliers) {c.get('runtime')} {c.get('device')} batch {c.get('batch')} "
                f"{c.get('input_size')} px, {c.get('threads')} threads{' [cached]' if self.cached else ''}")
