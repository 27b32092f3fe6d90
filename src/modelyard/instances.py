"""Instance types: the vCPUs, memory and price of each ``InstanceType``.

The table ships in ``modelyard/data/instances.json`` (SageMaker's real-time inference
prices, with their source and date) and can be extended or overridden with a JSON
file of the same shape (``instance_types``). The control plane sizes an instance's
memory budget from it; the planner prices endpoints with it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from modelyard.errors import ValidationError

__all__ = ["GIB", "InstanceTable", "InstanceType"]

GIB = 1024**3


@dataclass(frozen=True, slots=True)
class InstanceType:
    """A priced instance type."""

    name: str
    vcpus: int
    memory_gib: float
    usd_per_hour: float


@dataclass(frozen=True)
class InstanceTable:
    """Instance types with their prices, and where the prices come from."""

    types: dict[str, InstanceType]
    source: str
    date: str
    hours_per_month: float

    @classmethod
    def load(cls, extra: Path | None = None) -> InstanceTable:
        """The shipped table, overridden and extended by ``extra`` (same JSON shape)."""
        doc = json.loads(resources.files("modelyard").joinpath("data/instances.json").read_text())
        source, date = doc["source"], doc["date"]
        types = _parse_types(doc, "the built-in table")
        if extra is not None:
            try:
                more = json.loads(extra.read_text())
            except (OSError, ValueError) as exc:
                raise ValidationError(f"Cannot read instance table '{extra}': {exc}") from exc
            types |= _parse_types(more, str(extra))
            source, date = f"{source}; {more.get('source', extra.name)}", more.get("date", date)
        return cls(types, source, date, float(doc.get("hours_per_month", 720)))

    def get(self, name: str) -> InstanceType:
        """The named type; an unknown name is a :class:`ValidationError` listing the known ones."""
        try:
            return self.types[name]
        except KeyError:
            raise ValidationError(f"Unknown instance type '{name}'; known: {', '.join(sorted(self.types))}.") from None

    def monthly(self, instance: InstanceType, count: int) -> float:
        """USD per month for ``count`` instances running all month."""
        return round(instance.usd_per_hour * count * self.hours_per_month, 2)


def _parse_types(doc: Any, where: str) -> dict[str, InstanceType]:
    try:
        return {
            name: InstanceType(name, int(spec["vcpus"]), float(spec["memory_gib"]), float(spec["usd_per_hour"]))
            for name, spec in doc["instances"].items()
        }
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ValidationError(
            f"Instance table {where} must map 'instances' to {{name: {{vcpus, memory_gib, usd_per_hour}}}}: {exc}"
        ) from exc
