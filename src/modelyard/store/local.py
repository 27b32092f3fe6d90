"""Local folder store: the embedded default (a plain path or a ``file://`` URL).

obstore's ``LocalStore`` follows symbolic links wherever they point, so a link in the
store (``x.tar.gz -> /etc/shadow``, a linked folder) would serve files from anywhere
on the host. :class:`LocalRoot` keeps every read inside the store's folder: links
that resolve inside it are fine, anything resolving outside is treated as absent.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from obstore.store import LocalStore

from modelyard.errors import ArtifactNotFound, ValidationError

__all__ = ["LocalRoot", "open_local"]

log = logging.getLogger("modelyard.store")


def open_local(url: str, options: dict[str, str]) -> LocalStore:
    """A store over an existing folder (a mistyped path is an error, never an empty folder made for it)."""
    del options  # a folder needs none
    path = Path(unquote(urlsplit(url).path)) if url.startswith("file://") else Path(url)
    path = path.expanduser().resolve()
    if not path.is_dir():
        raise ValidationError(f"The store folder {path} does not exist (or is not a folder).")
    return LocalStore(prefix=path)


class LocalRoot:
    """The folder of a local store, and the check that keeps reads inside it (see module doc)."""

    def __init__(self, root: Path) -> None:
        self.path = Path(os.path.realpath(root))
        self._inside = str(self.path).rstrip(os.sep) + os.sep

    def contains(self, path: str | Path) -> bool:
        """Whether ``path`` (already resolved) is the root or below it."""
        text = str(path)
        return text == str(self.path) or text.startswith(self._inside)

    def check(self, key: str) -> os.stat_result | None:
        """The file ``key`` names, links followed; :class:`ArtifactNotFound` when it resolves outside.

        None when there is nothing there (the backend then says so in its own words).
        Without links on the way (the usual case) this costs one ``lstat`` per segment.
        """
        path = str(self.path)
        info = None
        for part in key.split("/"):
            path = os.path.join(path, part)
            try:
                info = os.lstat(path)
            except OSError:
                return None
            if stat.S_ISLNK(info.st_mode):
                return self._follow(key)
        return info

    def _follow(self, key: str) -> os.stat_result | None:
        real = os.path.realpath(os.path.join(self.path, key))
        if not self.contains(real):
            log.warning("refusing '%s' in the store at %s: it links to %s, outside the store", key, self.path, real)
            raise ArtifactNotFound(f"Could not find model data for target model '{key}'.")
        try:
            return os.stat(real)
        except OSError:
            return None

    def verify(self, key: str, checked: os.stat_result | None, meta: Any) -> None:
        """Refuse what the backend opened unless it is the file :meth:`check` saw.

        A link swapped between the check and the open would otherwise be followed:
        the backend's ETag (``inode-mtime-size`` in hex) must name the checked inode.
        """
        tag = str(meta.get("e_tag") or "").strip('"')
        if checked is not None and tag.split("-", 1)[0] == f"{checked.st_ino:x}":
            return
        log.warning("refusing '%s' in the store at %s: it changed between its check and its opening", key, self.path)
        raise ArtifactNotFound(f"Could not find model data for target model '{key}'.")

    def keep(self, keys: Iterable[str]) -> set[str]:
        """The listed ``keys`` that stay inside the root once links are followed.

        A regular file is judged by its folder (resolved once per folder), a link by
        its own target, so a large listing costs one ``lstat`` per file.
        """
        folders: dict[str, bool] = {}
        kept, left_out = set(), []
        for key in keys:
            path = os.path.join(self.path, key)
            folder = os.path.dirname(path)
            inside = folders.get(folder)
            if inside is None:
                inside = folders[folder] = self.contains(os.path.realpath(folder))
            if inside and os.path.islink(path):
                inside = self.contains(os.path.realpath(path))
            if inside:
                kept.add(key)
            else:
                left_out.append(key)
        if left_out:
            log.warning(
                "left %d objects out of a listing of the store at %s: they link outside the store (first: '%s')",
                len(left_out),
                self.path,
                left_out[0],
            )
        return kept
