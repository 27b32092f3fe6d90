"""S3 and S3-compatible stores (``s3://bucket/prefix/``), over obstore.

Endpoint, region and credentials come from ``options`` (``endpoint``, ``region``,
``access_key_id``, ``secret_access_key``, ``session_token``) or, as with every AWS
tool, from ``AWS_ENDPOINT_URL``, ``AWS_REGION``, ``AWS_ACCESS_KEY_ID``... in the
environment. obstore signs and sends the requests.
"""

from __future__ import annotations

import os
from typing import Any

from obstore.store import S3Store

__all__ = ["open_s3"]


def open_s3(url: str, options: dict[str, str]) -> S3Store:
    """An S3 store; plain-http endpoints (a local S3 server) are allowed explicitly."""
    config: dict[str, Any] = {k: v for k, v in options.items() if v}
    endpoint = config.get("endpoint") or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    if endpoint:
        config["endpoint"] = endpoint
        config.setdefault("virtual_hosted_style_request", False)
    client_options = {"allow_http": True} if str(endpoint or "").startswith("http://") else None
    return S3Store.from_url(url, config=config, client_options=client_options)  # type: ignore[arg-type]
