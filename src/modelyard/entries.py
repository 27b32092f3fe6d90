"""What the memory cache holds and what it reports: :class:`Entry` and :class:`CacheEvents`."""

from __future__ import annotations

from dataclasses import dataclass, field

from modelyard.handlers import Model

__all__ = ["CacheEvents", "Entry", "Key"]

Key = tuple[str, str]  # (target, version)


@dataclass(eq=False, slots=True)
class Entry:
    """A model resident in memory."""

    target: str
    version: str
    model: Model
    size: int
    disk_size: int
    download_seconds: float
    load_seconds: float
    loaded_at: float
    checked_at: float
    pinned: bool = False
    inflight: int = 0
    resident: bool = True
    hits: int = 0
    last_used: float = field(default=0.0)
    evicted_for: str = ""

    @property
    def key(self) -> Key:
        return (self.target, self.version)


class CacheEvents:
    """What the cache reports as it works; every method does nothing unless overridden.

    :class:`~modelyard.metrics.Metrics` overrides them all.
    """

    def hit(self) -> None:
        """A request found its model resident."""

    def miss(self) -> None:
        """A request had to wait for its model to load."""

    def waited(self, seconds: float) -> None:
        """A request waited ``seconds`` for a load."""

    def downloaded(self, seconds: float, *, from_disk: bool) -> None:
        """An artifact was fetched (from the disk cache when ``from_disk``)."""

    def loaded(self, seconds: float) -> None:
        """A model loaded into memory."""

    def unloaded(self, seconds: float) -> None:
        """A model was released."""

    def evicted(self, reason: str) -> None:
        """A model left memory (``capacity``, ``replaced``, ``unloaded``...)."""

    def load_failed(self, error: BaseException) -> None:
        """A load failed with ``error``."""

    # Per-model events, for statistics that know which model (never Prometheus labels).

    def model_loaded(self, entry: Entry) -> None:
        """``entry`` became resident (its target, version, sizes and timings are set)."""

    def model_evicted(self, entry: Entry, reason: str) -> None:
        """``entry`` left memory for ``reason``."""

    def model_failed(self, target: str, error: BaseException, seconds: float) -> None:
        """Loading ``target`` failed with ``error`` after ``seconds``."""
