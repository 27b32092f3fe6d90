"""Who may do what over HTTP: the HTTP layer's one way to authentication and policies.

With access keys configured (``[[access_keys]]``), every SageMaker call (invocations and
the control plane) must carry a SigV4 signature, checked by
:class:`~modelyard.control.auth.Verifier` against the request's :class:`Headers`
(read once, so the signature, the policy and the invocation see the same values). The
routes that are not SageMaker's own answer loopback clients only, and those that change
state (pinning, unloading, forgetting a model) also need a signature from a key allowed
on the control plane.

With or without keys, a state-changing route refuses what a web page could send: a
request from a browser on another origin (``Origin``/``Sec-Fetch-Site``), or a body
that is not JSON where JSON is expected, since browsers send ``text/plain`` bodies to
any address without asking first.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.types import Scope

from modelyard.control.auth import AccessKey, Verifier
from modelyard.errors import AccessDenied, UnsupportedContentType
from modelyard.server.headers import Headers, headers_of

__all__ = ["Guard", "is_loopback"]

#: paths anyone may reach: ``/`` is the control plane, which checks signatures itself
OPEN_PATHS = frozenset({"/", "/ping", "/metrics"})


def is_loopback(scope: Scope) -> bool:
    """Whether the client connected from this host."""
    client = scope.get("client")
    host = client[0] if client else ""
    return bool(host.startswith("127.") or host in ("::1", "localhost"))


def _raw_path(scope: Scope) -> str:
    return bytes(scope.get("raw_path") or scope["path"].encode()).decode("latin-1")


class Guard:
    """Authentication and the cross-site rules for one server (see module doc)."""

    def __init__(self, verifier: Verifier) -> None:
        self.verifier = verifier

    @property
    def keys(self) -> bool:
        """Whether access keys are configured (signatures required)."""
        return bool(self.verifier)

    def signer(self, scope: Scope, body: bytes) -> AccessKey:
        """The key whose valid signature the request carries (raises when there is none)."""
        query = bytes(scope.get("query_string", b"")).decode("latin-1")
        return self.verifier.verify(scope["method"], _raw_path(scope), query, headers_of(scope).values, body)

    def invocation(self, scope: Scope, body: bytes, endpoint: str, target: str | None) -> None:
        """Check a signed invocation of ``target`` on ``endpoint`` (nothing to do without keys)."""
        if self.keys:
            Verifier.authorize_invoke(self.signer(scope, body), endpoint, target)

    def control(self, scope: Scope, body: bytes, operation: str) -> AccessKey | None:
        """The key calling control-plane ``operation``, None when no keys are configured."""
        if not self.keys:
            return None
        key = self.signer(scope, body)
        Verifier.authorize_control(key, operation)
        return key

    def reachable(self, scope: Scope) -> None:
        """Refuse a route that is not SageMaker's own to other hosts when keys are configured."""
        if self.keys and scope["path"] not in OPEN_PATHS and not is_loopback(scope):
            raise AccessDenied("Only SageMaker's own routes are served to other hosts when keys are configured.")

    def change(self, scope: Scope, body: bytes, *, takes_json: bool = False) -> None:
        """Check a request that changes state on a route that is not SageMaker's own.

        With ``takes_json`` the body must be declared JSON; on other routes a body may come
        without a type (tritonclient sends its load requests so), but not as a form or text.
        """
        headers = headers_of(scope)
        self._same_origin(headers)
        declared = headers.get("content-type")
        media = (declared or "").split(";", 1)[0].strip().lower()
        if media != "application/json" and (takes_json or (body and declared is not None)):
            raise UnsupportedContentType("This route takes a JSON body: send Content-Type: application/json.")
        if self.keys:
            Verifier.authorize_control(self.signer(scope, body), f"{scope['method']} {scope['path']}")

    @staticmethod
    def _same_origin(headers: Headers) -> None:
        origin = headers.get("origin")
        foreign = origin is not None and (origin == "null" or urlsplit(origin).netloc != headers.get("host"))
        if foreign or headers.get("sec-fetch-site") in ("cross-site", "same-site"):
            raise AccessDenied("Requests from other web sites may not change this server's state.")
