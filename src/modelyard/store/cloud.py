"""Google Cloud Storage (``gs://``) and Azure Blob (``az://``) stores, over obstore.

Credentials come from ``options`` or the providers' usual environment variables.
"""

from __future__ import annotations

from typing import Any

from obstore.store import AzureStore, GCSStore

__all__ = ["open_azure", "open_gcs"]


def open_gcs(url: str, options: dict[str, str]) -> GCSStore:
    """A Google Cloud Storage bucket under a prefix."""
    config: dict[str, Any] = dict(options)
    return GCSStore.from_url(url, config=config)  # type: ignore[arg-type]


def open_azure(url: str, options: dict[str, str]) -> AzureStore:
    """An Azure Blob container under a prefix."""
    config: dict[str, Any] = dict(options)
    return AzureStore.from_url(url, config=config)  # type: ignore[arg-type]
