"""A request's headers, read once: what routing, signatures, policies and handlers all use.

A header that carries meaning (the target model, the variant, the content type, the
signature and its date...) must come once. A client that sends two target models, one
before the signed one, would otherwise have the signature check read one value while
the policy check and the invocation read the other: such requests are refused before
anything else looks at them, and every later reader takes its values from the one
:class:`Headers` made here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from starlette.types import Scope

from modelyard.errors import ValidationError

__all__ = ["MEANINGFUL", "Headers", "headers_of"]

#: headers that may come at most once (lower case)
MEANINGFUL = frozenset(
    {
        "host",
        "content-type",
        "content-length",
        "content-encoding",
        "transfer-encoding",
        "accept",
        "authorization",
        "x-amz-date",
        "x-amz-security-token",
        "x-amz-content-sha256",
        "x-amz-target",
        "x-amzn-sagemaker-target-model",
        "x-amzn-sagemaker-target-variant",
        "x-amzn-sagemaker-target-container-hostname",
        "x-amzn-sagemaker-custom-attributes",
        "x-amzn-sagemaker-inference-id",
        "inference-header-content-length",
        "origin",
    }
)

_SCOPE_KEY = "modelyard.headers"


@dataclass(frozen=True, slots=True)
class Headers:
    """Every header by lower-case name (the meaningful ones known to be unique)."""

    values: Mapping[str, str]

    @classmethod
    def parse(cls, raw: list[tuple[bytes, bytes]]) -> Headers:
        """Read ASGI headers; raise :class:`ValidationError` for a meaningful header given twice.

        Values are decoded as latin-1, as HTTP carries them; :meth:`text` re-reads one as UTF-8.
        """
        values: dict[str, str] = {}
        for name_bytes, value_bytes in raw:
            name = name_bytes.decode("latin-1")
            if name in values:
                if name in MEANINGFUL:
                    raise ValidationError(f"The {name} header is given more than once; give it once.")
                values[name] = f"{values[name]},{value_bytes.decode('latin-1')}"  # RFC 9110 §5.3
            else:
                values[name] = value_bytes.decode("latin-1")
        return cls(values)

    def get(self, name: str) -> str | None:
        """The value of ``name`` (lower case), None when absent."""
        return self.values.get(name)

    def text(self, name: str) -> str | None:
        """The value of ``name`` read as UTF-8 (target models may hold any printable character)."""
        value = self.values.get(name)
        return None if value is None else value.encode("latin-1").decode("utf-8", "replace")

    @property
    def target(self) -> str | None:
        """``X-Amzn-SageMaker-Target-Model``."""
        return self.text("x-amzn-sagemaker-target-model")

    @property
    def variant(self) -> str | None:
        """``X-Amzn-SageMaker-Target-Variant``."""
        return self.text("x-amzn-sagemaker-target-variant")

    @property
    def content_length(self) -> int | None:
        """The declared body size, when it is a plain number."""
        value = self.values.get("content-length")
        return int(value) if value is not None and value.isdigit() else None


def headers_of(scope: Scope) -> Headers:
    """The request's :class:`Headers`, parsed on first use and kept in its scope."""
    headers: Headers | None = scope.get(_SCOPE_KEY)
    if headers is None:
        headers = scope[_SCOPE_KEY] = Headers.parse(scope["headers"])
    return headers
