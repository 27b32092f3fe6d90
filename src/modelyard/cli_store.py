"""Checks of a store URL before a command uses it.

A local store is a folder the user names: a missing one is a typo far more often
than a wish, so commands refuse it with a clear error instead of creating an empty
folder and serving, benchmarking or planning nothing. ``serve --create-store`` asks
for the folder to be made.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlsplit

import click

__all__ = ["check_store", "local_folder"]


def local_folder(url: str) -> Path | None:
    """The folder a store URL names when it is a local one (a path or ``file://``), else None."""
    if url.startswith("file://"):
        return Path(unquote(urlsplit(url).path)).expanduser()
    if "://" in url:
        return None
    return Path(url).expanduser()


def check_store(url: str | None, *, create: bool = False, hint: str = "") -> None:
    """Refuse a local store folder that does not exist (or make it, with ``create``), or that is a file."""
    if url is None:
        return
    folder = local_folder(url)
    if folder is None:
        return
    if folder.is_dir():
        return
    if folder.exists():
        raise click.ClickException(f"The store '{url}' is a file, not a folder of artifacts.")
    if create:
        try:
            folder.mkdir(parents=True)
        except OSError as exc:
            raise click.ClickException(f"Cannot create the store folder '{url}': {exc.strerror}.") from exc
        return
    raise click.ClickException(f"The store folder '{url}' does not exist{hint}.")
