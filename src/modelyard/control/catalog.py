"""Control-plane state: models, endpoint configs and endpoints, persisted in SQLite.

One embedded SQLite file in the data folder (``<data>/control.sqlite3``); each
resource is stored as the JSON document DescribeX returns, plus the columns lists
filter and sort on, and its tags (``ListTags``; not part of DescribeX). The schema is
versioned with ``PRAGMA user_version`` and migrated forward when the file is opened.
SQLite is used from one thread at a time (the event loop), and every change commits
at once, so a crash loses nothing that was acknowledged.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["KINDS", "Catalog"]

SCHEMA_VERSION = 2
KINDS = ("model", "endpoint_config", "endpoint")

_MIGRATIONS: dict[int, list[str]] = {
    1: [
        """CREATE TABLE resources (
            kind TEXT NOT NULL,
            name TEXT NOT NULL,
            created REAL NOT NULL,
            modified REAL NOT NULL,
            status TEXT,
            doc TEXT NOT NULL,
            PRIMARY KEY (kind, name)
        )""",
        "CREATE INDEX resources_by_created ON resources (kind, created)",
    ],
    2: ["ALTER TABLE resources ADD COLUMN tags TEXT NOT NULL DEFAULT '{}'"],
}


class Catalog:
    """Resources by kind and name; ``":memory:"`` for a catalog that does not persist."""

    def __init__(self, path: Path | str) -> None:
        if isinstance(path, Path):
            path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._migrate()

    def _migrate(self) -> None:
        version = int(self._db.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise RuntimeError(f"{self.path} was written by a newer modelyard (schema {version} > {SCHEMA_VERSION}).")
        for target in range(version + 1, SCHEMA_VERSION + 1):
            with self._transaction():
                for statement in _MIGRATIONS[target]:
                    self._db.execute(statement)
                self._db.execute(f"PRAGMA user_version = {target}")

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def close(self) -> None:
        """Close the database."""
        self._db.close()

    def insert(
        self,
        kind: str,
        name: str,
        doc: dict[str, Any],
        *,
        created: float,
        status: str | None = None,
        tags: dict[str, str] | None = None,
    ) -> bool:
        """Add a resource; False when one of that kind and name exists already."""
        try:
            self._db.execute(
                "INSERT INTO resources (kind, name, created, modified, status, doc, tags) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (kind, name, created, created, status, json.dumps(doc), json.dumps(tags or {})),
            )
        except sqlite3.IntegrityError:
            return False
        return True

    def update(self, kind: str, name: str, doc: dict[str, Any], *, modified: float, status: str | None = None) -> None:
        """Replace a resource's document (and status)."""
        self._db.execute(
            "UPDATE resources SET doc = ?, modified = ?, status = ? WHERE kind = ? AND name = ?",
            (json.dumps(doc), modified, status, kind, name),
        )

    def get(self, kind: str, name: str) -> dict[str, Any] | None:
        """A resource's document, or None."""
        row = self._db.execute("SELECT doc FROM resources WHERE kind = ? AND name = ?", (kind, name)).fetchone()
        return None if row is None else dict(json.loads(row[0]))

    def find(self, kind: str, lowered: str) -> str | None:
        """The name of the ``kind`` resource whose lower-cased name is ``lowered`` (ARNs are lower case)."""
        row = self._db.execute(
            "SELECT name FROM resources WHERE kind = ? AND lower(name) = ? ORDER BY name", (kind, lowered)
        ).fetchone()
        return None if row is None else str(row[0])

    def tags(self, kind: str, name: str) -> dict[str, str]:
        """A resource's tags, in the order they were added."""
        row = self._db.execute("SELECT tags FROM resources WHERE kind = ? AND name = ?", (kind, name)).fetchone()
        return {} if row is None else dict(json.loads(row[0]))

    def set_tags(self, kind: str, name: str, tags: dict[str, str]) -> None:
        """Replace a resource's tags."""
        self._db.execute("UPDATE resources SET tags = ? WHERE kind = ? AND name = ?", (json.dumps(tags), kind, name))

    def delete(self, kind: str, name: str) -> bool:
        """Remove a resource; False when there was none."""
        return self._db.execute("DELETE FROM resources WHERE kind = ? AND name = ?", (kind, name)).rowcount > 0

    def list(self, kind: str) -> list[dict[str, Any]]:
        """Every resource of ``kind``, oldest first."""
        rows = self._db.execute("SELECT doc FROM resources WHERE kind = ? ORDER BY created, name", (kind,)).fetchall()
        return [dict(json.loads(row[0])) for row in rows]
