"""What a server says when it starts: what it serves, with which budgets, and whether its store answers."""

from __future__ import annotations

import asyncio
import logging

from modelyard.control.service import ControlService
from modelyard.endpoint import Endpoint
from modelyard.errors import ModelyardError
from modelyard.handlers import frameworks

__all__ = ["announce"]

log = logging.getLogger("modelyard.server")

_CHECK_SECONDS = 15.0


def _size(value: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def _frameworks() -> str:
    found = frameworks()
    installed = ", ".join(f"{name} {version}" for name, version in found.items() if version)
    missing = [name for name, version in found.items() if not version]
    return installed + (f" (not installed: {', '.join(missing)})" if missing else "")


async def _check_store(endpoint: Endpoint) -> None:
    try:
        await asyncio.wait_for(endpoint.store.check(), _CHECK_SECONDS)
    except (ModelyardError, TimeoutError) as exc:
        reason = exc.message if isinstance(exc, ModelyardError) else f"no answer in {_CHECK_SECONDS:g} s"
        log.warning(
            "The store %s of endpoint %s does not answer: %s. Its models cannot load until it does.",
            endpoint.store.url,
            endpoint.name,
            reason,
        )


def announce(endpoint: Endpoint | None, control: ControlService | None) -> asyncio.Task[None] | None:
    """Log what is served; check the default store in the background (returns that check)."""
    if endpoint is not None:
        cache = endpoint.cache
        log.info(
            "serving endpoint %s from %s: memory budget %s, disk cache %s (budget %s); frameworks: %s",
            endpoint.name,
            endpoint.store.url,
            _size(cache.budget),
            cache.disk.root,
            _size(cache.disk.budget),
            _frameworks(),
        )
    if control is not None:
        names = [deployment.name for deployment in control.registry.all()]
        log.info(
            "control plane on, state in %s: %d endpoint(s) running%s",
            control.catalog.path,
            len(names),
            f" ({', '.join(sorted(names)[:10])}{'...' if len(names) > 10 else ''})" if names else "",
        )
    if endpoint is None:
        return None
    return asyncio.get_running_loop().create_task(_check_store(endpoint))
