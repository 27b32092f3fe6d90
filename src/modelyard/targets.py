"""Target models: what a name may be, and what it names in the store.

A target is the artifact's path under the store prefix. It names one object (a
``model.tar.gz``, a single model file) or, with a trailing slash, a folder artifact:
every object under that prefix (``Houston/``). A name without the slash never
downloads a folder; when only ``Houston/…`` exists, the error says how to name it.
"""

from __future__ import annotations

import hashlib
from urllib.parse import unquote

from modelyard.errors import ArtifactNotFound, InvalidTargetModel
from modelyard.store import ObjectInfo, Store

__all__ = ["MAX_TARGET_LENGTH", "resolve", "resolve_version", "validate_target"]

MAX_TARGET_LENGTH = 1024
_MAX_SEGMENT = 255  # bytes in one file name on every common file system


def validate_target(target: str | None) -> str:
    """Check a target model name; return it unchanged or raise :class:`InvalidTargetModel`.

    A target is a relative path under the store prefix: 1–1024 printable characters,
    no absolute path, no ``.``/``..`` segment (also when percent-encoded), no backslash,
    no segment longer than 255 bytes (no file system could hold it).
    """
    if not target:
        raise InvalidTargetModel("The target model is missing: set the X-Amzn-SageMaker-Target-Model header.")
    if len(target) > MAX_TARGET_LENGTH:
        raise InvalidTargetModel(f"The target model is longer than {MAX_TARGET_LENGTH} characters.")
    if not target.isprintable():
        raise InvalidTargetModel("The target model contains non-printable characters.")
    decoded = unquote(unquote(target))
    segments = decoded.replace("\\", "/").split("/")
    if decoded.startswith(("/", "\\")) or "\\" in target or any(s in (".", "..") for s in segments):
        raise InvalidTargetModel(f"Invalid target model '{target}': it must be a relative path inside the store.")
    if target.endswith("/") and len(target.strip("/")) == 0:
        raise InvalidTargetModel(f"Invalid target model '{target}'.")
    if any(len(s.encode()) > _MAX_SEGMENT for s in target.split("/")):
        raise InvalidTargetModel(
            f"Invalid target model: a segment of it is longer than {_MAX_SEGMENT} bytes, which no file name can be."
        )
    return target


async def resolve(store: Store, target: str) -> tuple[ObjectInfo, list[ObjectInfo] | None]:
    """The target's version; for a folder artifact (a trailing slash) also its members."""
    if not target.endswith("/"):
        try:
            return await store.head(target), None
        except ArtifactNotFound:
            if await store.any_under(target + "/"):
                raise ArtifactNotFound(
                    f"Could not find model data for target model '{target}': it names a folder. "
                    f"A folder artifact is named with a trailing slash: '{target}/'."
                ) from None
            raise ArtifactNotFound(f"Could not find model data for target model '{target}'.") from None
    members = [m for m in await store.list(target) if not m.key.endswith("/")]
    if not members:
        raise ArtifactNotFound(f"Could not find model data for target model '{target}'.")
    digest = hashlib.sha256("\n".join(f"{m.key}\0{m.version}" for m in members).encode()).hexdigest()[:32]
    return ObjectInfo(target, sum(m.size for m in members), digest), members


async def resolve_version(store: Store, target: str) -> str:
    """The version of ``target`` in the store now (:class:`ArtifactNotFound` if absent)."""
    info, _ = await resolve(store, target)
    return info.version
