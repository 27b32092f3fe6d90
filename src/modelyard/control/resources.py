"""Control-plane resources as the operations see them: ARNs, lookups, listings, the caller.

:class:`Resources` wraps the :class:`~modelyard.control.catalog.Catalog` with
SageMaker's words (ARNs, "Could not find endpoint ..." messages); :class:`Call` is one
request: its operation, its body and the access key of whoever made it, which limits
the resources it may name and see.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from modelyard.control.auth import AccessKey, Verifier
from modelyard.control.catalog import Catalog
from modelyard.control.shapes import Listing, Tag
from modelyard.errors import ControlValidation

__all__ = ["ACCOUNT", "ARN_KINDS", "KIND_WORDS", "Call", "Resources"]

ACCOUNT = "000000000000"
ARN_KINDS = {"model": "model", "endpoint_config": "endpoint-config", "endpoint": "endpoint"}
KIND_WORDS = {"model": "model", "endpoint_config": "endpoint configuration", "endpoint": "endpoint"}


class Resources:
    """Models, endpoint configs and endpoints in a catalog, named as SageMaker names them."""

    def __init__(self, catalog: Catalog, region: str, *, clock: Callable[[], float] = time.time) -> None:
        self.catalog = catalog
        self.region = region
        self.now = clock

    def arn(self, kind: str, name: str) -> str:
        """The resource's ARN (SageMaker lower-cases names in ARNs)."""
        return f"arn:aws:sagemaker:{self.region}:{ACCOUNT}:{ARN_KINDS[kind]}/{name.lower()}"

    def find(self, kind: str, name: str) -> dict[str, Any] | None:
        """A resource's document, None when it does not exist."""
        return self.catalog.get(kind, name)

    def get(self, kind: str, name: str) -> dict[str, Any]:
        """A resource's document, or SageMaker's "Could not find" error."""
        doc = self.catalog.get(kind, name)
        if doc is None:
            raise ControlValidation(f'Could not find {KIND_WORDS[kind]} "{self.arn(kind, name)}".')
        return doc

    def create(
        self, kind: str, name: str, doc: dict[str, Any], *, status: str | None = None, tags: Sequence[Tag] = ()
    ) -> None:
        """Store a new resource, or SageMaker's "already existing" error."""
        tag_map = {tag.Key: tag.Value for tag in tags}
        if not self.catalog.insert(kind, name, doc, created=doc["CreationTime"], status=status, tags=tag_map):
            raise ControlValidation(f'Cannot create already existing {KIND_WORDS[kind]} "{self.arn(kind, name)}".')

    def delete(self, kind: str, name: str) -> None:
        """Remove a resource, or SageMaker's "Could not find" error."""
        if not self.catalog.delete(kind, name):
            raise ControlValidation(f'Could not find {KIND_WORDS[kind]} "{self.arn(kind, name)}".')


@dataclass(frozen=True, slots=True)
class Call:
    """One control-plane request and its caller (``key`` None: no access keys configured)."""

    operation: str
    body: dict[str, Any]
    key: AccessKey | None
    resources: Resources

    def allow(self, kind: str, name: str) -> str:
        """``name``, once the caller is known to be allowed to act on it."""
        if self.key is not None:
            Verifier.authorize_resource(self.key, self.operation, self.resources.arn(kind, name), name)
        return name

    def page(
        self, kind: str, listing: Listing, name_key: str, summary: Callable[[dict[str, Any]], dict[str, Any]]
    ) -> dict[str, Any]:
        """One page of a List* answer: the caller's resources, filtered and sorted as ``listing`` asks."""
        docs = self.resources.catalog.list(kind)
        if self.key is not None:
            docs = [d for d in docs if self.key.may_name(d[name_key])]
        if listing.NameContains:
            docs = [d for d in docs if listing.NameContains.lower() in d[name_key].lower()]
        if listing.StatusEquals:
            docs = [d for d in docs if d.get("EndpointStatus") == listing.StatusEquals]
        bounds = (
            ("CreationTime", listing.CreationTimeBefore, listing.CreationTimeAfter),
            ("LastModifiedTime", listing.LastModifiedTimeBefore, listing.LastModifiedTimeAfter),
        )
        for field, before, after in bounds:
            if before is not None:
                docs = [d for d in docs if float(d.get(field, d["CreationTime"])) < before]
            if after is not None:
                docs = [d for d in docs if float(d.get(field, d["CreationTime"])) > after]
        sort_keys: dict[str, Callable[[dict[str, Any]], Any]] = {
            "Name": lambda d: d[name_key],
            "CreationTime": lambda d: d["CreationTime"],
            "Status": lambda d: d.get("EndpointStatus", ""),
        }
        docs.sort(key=sort_keys[listing.SortBy], reverse=listing.SortOrder == "Descending")
        start = int(listing.NextToken or 0)
        result: dict[str, Any] = {"items": [summary(d) for d in docs[start : start + listing.MaxResults]]}
        if start + listing.MaxResults < len(docs):
            result["NextToken"] = str(start + listing.MaxResults)
        return result
