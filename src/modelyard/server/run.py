"""Running the server: in the foreground (``modelyard serve``) or on a thread (demo, tests)."""

from __future__ import annotations

import logging
import socket
import threading
import time
from types import TracebackType

import uvicorn
from uvicorn.config import LOGGING_CONFIG

from modelyard import logs, sizing
from modelyard.control.auth import AccessKey, Verifier
from modelyard.control.service import ControlService
from modelyard.endpoint import Endpoint
from modelyard.errors import ValidationError
from modelyard.metrics import MetricsHub
from modelyard.server.app import create_app
from modelyard.server.connections import protocol_class
from modelyard.server.guard import Guard
from modelyard.server.limits import ConnectionLimits, raise_open_files_limit
from modelyard.server.runtime import InvocationsApp
from modelyard.settings import Settings
from modelyard.store import Store

__all__ = ["BackgroundServer", "serve"]

log = logging.getLogger("modelyard.server")


def build(
    settings: Settings, store: Store | None = None
) -> tuple[InvocationsApp, Endpoint | None, ControlService | None, MetricsHub]:
    """The app with its default endpoint (when there is a store) and its control plane (unless turned off)."""
    hub = MetricsHub()
    endpoint = Endpoint(settings, store, hub=hub) if store is not None or settings.store is not None else None
    control = ControlService(settings, hub) if settings.control else None
    if endpoint is None and control is None:
        raise ValidationError("Nothing to serve: give a store, or leave the control plane on.")
    guard = Guard(Verifier(AccessKey(**key.model_dump()) for key in settings.access_keys))
    if control is not None and not guard.keys:
        log.warning(
            "The control plane is open to every process that can reach %s:%s: anyone there may create, change "
            "and delete endpoints. Configure access_keys to require SigV4 signatures, or --no-control.",
            settings.host,
            settings.port,
        )
    return create_app(endpoint, control, hub, guard), endpoint, control, hub


def _config(
    app: InvocationsApp,
    settings: Settings,
    hub: MetricsHub,
    *,
    open_files: int | None = None,
    uvicorn_logging: bool = True,
) -> uvicorn.Config:
    try:
        import uvloop  # noqa: F401

        loop = "uvloop"
    except ImportError:
        loop = "asyncio"
    limits = ConnectionLimits.from_settings(settings, open_files)
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        loop=loop,
        # httptools with limits on heads, read deadlines and connections (uvicorn's limit_concurrency stays off)
        http=protocol_class(limits, hub.connections),
        ws="none",
        access_log=False,
        log_level=settings.log_level.lower(),
        lifespan="on",
        timeout_graceful_shutdown=10,
        # serve() configures logging itself, so uvicorn's lines come out in the same format
        log_config=LOGGING_CONFIG if uvicorn_logging else None,
    )


def serve(settings: Settings, store: Store | None = None) -> None:
    """Serve until interrupted."""
    logs.configure(settings.log_level, settings.log_format)
    sizing.limit_arenas(2)
    if settings.host not in ("127.0.0.1", "localhost", "::1") and not settings.access_keys:
        log.warning(
            "Serving on %s without access keys: anyone who reaches it can invoke models and create endpoints. "
            "Configure access_keys to require SigV4 signatures.",
            settings.host,
        )
    before, open_files = raise_open_files_limit()
    app, _, _, hub = build(settings, store)
    config = _config(app, settings, hub, open_files=open_files, uvicorn_logging=False)
    log.info(
        "Open files allowed: %s%s; client connections: up to %d.",
        open_files if open_files is not None else "unlimited",
        f" (raised from {before})" if before != open_files else "",
        hub.connections.limit,
    )
    uvicorn.Server(config).run()


class BackgroundServer:
    """A server on a thread, bound to ``settings.host`` (port 0 picks a free port).

    ``with BackgroundServer(settings) as server: boto3.client(..., endpoint_url=server.url)``
    """

    def __init__(self, settings: Settings, store: Store | None = None) -> None:
        app, endpoint, control, hub = build(settings, store)
        self.endpoint = endpoint
        self.control = control
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((settings.host, settings.port))
        self.port = self._socket.getsockname()[1]
        self.url = f"http://{settings.host}:{self.port}"
        self.connections = hub.connections
        """The server's connection numbers (open, limit, closed by reason)."""
        self._server = uvicorn.Server(_config(app, settings, hub))
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True)

    def __enter__(self) -> BackgroundServer:
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.01)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def stop(self) -> None:
        """Shut down and wait for the thread."""
        self._server.should_exit = True
        self._thread.join(timeout=30)
        self._socket.close()
