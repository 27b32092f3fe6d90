"""A container's ``Environment``: which instance settings a control-plane caller may set.

``MODELYARD_<SETTING>`` keys set that setting for the endpoint's instances, and only
the settings that shape one instance's cache and request handling may be set this
way. Everything else belongs to whoever starts the server: what runs code (trust),
where files are read and written (folders, stores' credentials), how the process
listens and logs, and who may call it. A key that cannot apply is refused when the
model is created, never ignored. Other ``Environment`` keys (``SAGEMAKER_*``, the
user's own) are kept in the model and passed to nothing.

Precedence for a control-plane instance, lowest first: the server's settings (file,
environment, command line) < the container's ``Environment`` < the SageMaker API's
own fields, which have one place each: ``Image`` names the framework,
``MultiModelConfig.ModelCacheSetting`` the cache mode, and ``InstanceType`` the
memory budget, which ``MODELYARD_MEMORY`` may lower but not raise.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import TypeAdapter
from pydantic import ValidationError as SettingError

from modelyard.errors import ControlValidation
from modelyard.settings import Settings

__all__ = ["INSTANCE_SETTINGS", "PREFIX", "instance_settings"]

PREFIX = "MODELYARD_"

#: the settings a container's Environment may set
INSTANCE_SETTINGS = frozenset(
    {
        "memory",
        "disk",
        "eviction",
        "version_check_interval",
        "load_wait_timeout",
        "max_concurrent_loads",
        "max_inflight",
        "max_payload",
        "max_unpacked",
        "inline_payload",
        "preload",
        "pin",
        "request_log_sample",
    }
)

#: settings with a place of their own in SageMaker's API
_API_FIELDS = {
    "framework": "the container's Image names the framework",
    "model_cache": "set MultiModelConfig.ModelCacheSetting",
    "store": "set the container's ModelDataUrl",
}


@functools.cache
def _adapter(name: str) -> TypeAdapter[Any]:
    field = Settings.model_fields[name]
    kind: Any = Annotated[field.annotation, *field.metadata] if field.metadata else field.annotation
    return TypeAdapter(kind)


def _value(name: str, raw: str) -> Any:
    """``raw`` read as the setting's type; lists are JSON, as in the server's own environment."""
    adapter = _adapter(name)
    try:
        if name in ("preload", "pin"):
            try:
                listed = json.loads(raw)
            except ValueError:
                raise ValueError('give a JSON list of target models, like ["Houston_TX.tar.gz"]') from None
            return adapter.validate_python(listed)
        return adapter.validate_strings(raw)
    except (SettingError, ValueError) as exc:
        problem = exc.errors()[0]["msg"] if isinstance(exc, SettingError) else str(exc)
        raise ControlValidation(f"Environment {PREFIX}{name.upper()}={raw[:100]!r} is not valid: {problem}.") from exc


def instance_settings(environment: Mapping[str, str]) -> dict[str, Any]:
    """The settings ``environment`` sets, typed; :class:`ControlValidation` for one that cannot apply."""
    chosen: dict[str, Any] = {}
    for key, raw in environment.items():
        if not key.startswith(PREFIX):
            continue
        name = key.removeprefix(PREFIX).lower()
        if name in _API_FIELDS:
            raise ControlValidation(f"Environment {key} cannot be set here: {_API_FIELDS[name]}.")
        if name not in Settings.model_fields:
            raise ControlValidation(f"Environment {key} names no modelyard setting.")
        if name not in INSTANCE_SETTINGS:
            allowed = ", ".join(PREFIX + n.upper() for n in sorted(INSTANCE_SETTINGS))
            raise ControlValidation(
                f"Environment {key} is a server setting: only the operator who starts the server can set it. "
                f"A container may set {allowed}."
            )
        chosen[name] = _value(name, raw)
    return chosen
