"""One typed settings object for a modelyard server.

Precedence, lowest first: defaults < config file (TOML) < environment variables
(``MODELYARD_<FIELD>``, e.g. ``MODELYARD_MEMORY=4GiB``) < command-line options.
Build it once in ``main()`` with :meth:`Settings.load` and pass it down; nothing
reads the environment at import time. Sizes accept ``512MiB``, ``2GiB``, ``10GB``.
"""

from __future__ import annotations

from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ByteSize, ConfigDict, Field
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

__all__ = ["AccessKeySpec", "EndpointSpec", "Settings"]

_config_file: ContextVar[Path | None] = ContextVar("modelyard_config_file", default=None)


class AccessKeySpec(BaseModel):
    """An access key in settings (``[[access_keys]]`` in the config file)."""

    model_config = ConfigDict(extra="forbid")

    id: str
    """The access key id (``aws_access_key_id``)."""
    secret: str
    """The secret access key."""
    endpoints: list[str] | None = None
    """Endpoint name patterns (globs) the key may invoke; None: all."""
    target_prefixes: list[str] | None = None
    """Target models must start with one of these (SageMaker's ``sagemaker:TargetModel``); None: all."""
    control: bool = True
    """Whether the key may call the control plane."""


class EndpointSpec(BaseModel):
    """An endpoint declared in the config file (``[[endpoints]]``): model, config and endpoint in one."""

    model_config = ConfigDict(extra="forbid")

    name: str
    """The endpoint's name; its model and config are named after it."""
    model_data_url: str
    """The store prefix (``ModelDataUrl``)."""
    image: str = "auto"
    """The handler (``Image``)."""
    instance_type: str = "ml.m5.large"
    """``InstanceType`` of the single variant."""
    instance_count: int = Field(default=1, ge=1, le=64)
    """``InitialInstanceCount``."""
    model_cache: Literal["Enabled", "Disabled"] = "Enabled"
    """``MultiModelConfig.ModelCacheSetting``."""
    environment: dict[str, str] = Field(default_factory=dict)
    """Container ``Environment``."""


class Settings(BaseSettings):
    """Everything a server needs to know; every field is documented below."""

    model_config = SettingsConfigDict(env_prefix="MODELYARD_", extra="forbid", validate_default=True)

    store: str | None = None
    """Where the default endpoint's artifacts live: a folder, ``file://``, ``s3://bucket/prefix/``, ``gs://``,
    ``az://`` or ``memory://name``. None serves only the endpoints created through the control plane."""
    store_options: dict[str, str] = Field(default_factory=dict)
    """Backend options, e.g. ``endpoint``, ``region``, ``access_key_id`` for S3 (AWS_* variables also work)."""
    endpoint_name: str = "modelyard"
    """The name served at ``/endpoints/{name}/invocations``."""
    variant_name: str = "AllTraffic"
    """Returned as ``X-Amzn-Invoked-Production-Variant`` and used as a metrics label."""
    instance_id: str = "0"
    """This instance's name in metrics."""
    host: str = "127.0.0.1"
    """Address to bind."""
    port: int = 8080
    """Port to bind."""
    memory: ByteSize = ByteSize(2 * 1024**3)
    """Memory budget for loaded models, in bytes (``2GiB``)."""
    disk_cache: Path | None = None
    """Folder for downloaded artifacts; default ``~/.cache/modelyard/<endpoint>``."""
    disk: ByteSize = ByteSize(10 * 1024**3)
    """Byte budget of the disk cache."""
    max_unpacked: ByteSize = ByteSize(4 * 1024**3)
    """Largest unpacked size of one artifact (protects against tar bombs); the disk budget and
    ``max_unpacked_ratio`` × the memory budget bound it too, whichever is smallest."""
    max_unpacked_ratio: float = Field(default=4.0, gt=0.0)
    """Largest unpacked artifact as a multiple of the memory budget. A model file takes about its own
    size in memory once loaded (XGBoost UBJ 0.7×, XGBoost JSON and LightGBM text 1.1× of the file,
    ONNX and pickles about 1×), so an artifact several times larger than the whole budget can never be
    served; 4 leaves room for verbose formats and files the model does not load. Crossing it is a
    ``ModelTooLarge`` (400) as soon as the unpacked bytes pass it, before the artifact is fully read."""
    max_payload: int = 6_291_456
    """Largest request body in bytes (SageMaker's limit)."""
    version_check_interval: float = 5.0
    """Seconds between checks of a warm model's artifact for a new version."""
    load_wait_timeout: float = 60.0
    """Seconds a request waits in all: for its model to load (then ModelNotReadyException) and, with a body
    over ``inline_payload``, for its turn among large requests (then ServiceUnavailable)."""
    max_concurrent_loads: int = 4
    """Different models downloading/loading at the same time."""
    max_inflight: int = 512
    """Requests in progress before new ones get ServiceUnavailable."""
    max_connections: int | None = Field(default=None, ge=1)
    """Open client connections at most. At the cap, a new connection closes the most stalled one (idle
    keep-alive first, then the one reading a request for the longest time); when every connection is busy
    with a request being served, it is answered 503 with ``Retry-After: 1``. None: derived from the process's
    open-file limit (half of what is left after 64 descriptors for the store, disk cache and logs, at most
    4,096), so that accepting can never run out of file descriptors."""
    max_header_bytes: ByteSize = Field(default=ByteSize(64 * 1024), ge=1024)
    """Largest request head (request line and headers); a larger one is answered 431 and the connection closed."""
    header_timeout: float = Field(default=10.0, gt=0)
    """Seconds from a request's first byte (or the connection's opening) until its headers are complete;
    then 408 and the connection is closed (slowloris)."""
    body_timeout: float = Field(default=30.0, gt=0)
    """Longest pause, in seconds, while a request's body arrives or while a response waits for the client to
    read it; then the connection is closed (with 408 when no response was started)."""
    request_timeout: float = Field(default=60.0, gt=0)
    """Seconds from a request's first byte until its body has fully arrived, however steadily it trickles
    (SageMaker gives a whole invocation 60 s)."""
    keep_alive_timeout: float = Field(default=75.0, gt=0)
    """Seconds an idle keep-alive connection stays open. Longer than the 60 s idle timeout of AWS load
    balancers, so that a balancer never reuses a connection the server is closing."""
    inline_payload: ByteSize = ByteSize(64 * 1024)
    """Bodies up to this size predict on the event loop; larger ones on a worker thread, in turns."""
    large_requests: int = Field(default=1, ge=1)
    """Requests with bodies over ``inline_payload`` decoding, predicting and encoding at once, per endpoint
    instance (each keeps a core busy; small requests need one left)."""
    large_queue: int = Field(default=16, ge=0)
    """Large requests waiting for their turn; more get ServiceUnavailable. A request waits at most
    ``load_wait_timeout`` in all, for its model and for its turn."""
    eviction: Literal["gdsf", "lru"] = "gdsf"
    """Eviction policy: ``gdsf`` (recency, frequency, size, load cost) or plain ``lru``."""
    model_cache: Literal["Enabled", "Disabled"] = "Enabled"
    """SageMaker's ModelCacheSetting: ``Disabled`` unloads a model after each request."""
    framework: str = "auto"
    """Handler for every artifact (``xgboost``...) or ``auto`` to detect it per artifact."""
    trust_store: bool = False
    """Allow formats that run code when loaded (pickle, joblib, MLflow models, inference.py) from the default store."""
    trusted_stores: list[str] = Field(default_factory=list)
    """Store URL prefixes (``s3://bucket/trusted/``, folders) whose artifacts may run code when endpoints
    created through the control plane serve them. Only the operator grants trust: never an API call."""
    model_roots: list[Path] = Field(default_factory=list)
    """Folders on this host that a ``ModelDataUrl`` given through the control plane may point into (the default
    store's folder and the declared endpoints' folders are allowed too); other local folders are refused."""
    pinned_fraction: float = Field(default=0.5, ge=0.0, le=1.0)
    """Largest share of the memory budget pinned models may hold (``--pin``, ``POST /models``, V2 load)."""
    preload: list[str] = Field(default_factory=list)
    """Target models loaded at start-up."""
    pin: list[str] = Field(default_factory=list)
    """Target models loaded at start-up and never evicted."""
    data_dir: Path | None = None
    """Folder for the control plane's state (SQLite) and its endpoints' disk caches;
    default ``~/.local/share/modelyard``."""
    control: bool = True
    """Serve the SageMaker control plane (``POST /`` with ``X-Amz-Target: SageMaker.*``)."""
    region: str = "us-east-1"
    """Region in ARNs and in the SigV4 credential scope."""
    access_keys: list[AccessKeySpec] = Field(default_factory=list)
    """Keys whose SigV4 signatures are accepted; none means no authentication (loopback only)."""
    instance_types: Path | None = None
    """A JSON table of extra or overriding instance types (the shape of ``data/instances.json``)."""
    instance_memory_fraction: float = Field(default=0.75, gt=0.0, le=1.0)
    """Share of an instance type's memory given to its model budget."""
    endpoints: list[EndpointSpec] = Field(default_factory=list)
    """Endpoints declared at start-up (created unless they exist), same fields as the API."""
    log_level: str = "info"
    """Logging level."""
    log_format: Literal["text", "json"] = "text"
    """``text`` lines, or ``json`` lines (one object per line with model, version, timings, request id)."""
    request_log_sample: float = Field(default=0.0, ge=0.0, le=1.0)
    """Fraction of requests logged on ``modelyard.requests`` (0 = none, the default; 1 = all)."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, env_settings, TomlConfigSettingsSource(settings_cls, toml_file=_config_file.get())

    @classmethod
    def load(cls, config_file: Path | None = None, **overrides: Any) -> Settings:
        """Settings from the config file, the environment and ``overrides`` (CLI), in that order."""
        token = _config_file.set(config_file)
        try:
            return cls(**{k: v for k, v in overrides.items() if v is not None})
        finally:
            _config_file.reset(token)

    def max_loadable(self) -> int:
        """The most bytes an artifact may unpack to and still be loadable: ``max_unpacked_ratio`` × memory."""
        return int(self.max_unpacked_ratio * int(self.memory))

    def disk_cache_dir(self) -> Path:
        """The disk cache folder, defaulting under the user's cache directory."""
        return self.disk_cache or Path.home() / ".cache" / "modelyard" / self.endpoint_name

    def trusts(self, url: str) -> bool:
        """Whether artifacts under the store ``url`` may run code when loaded (see ``trusted_stores``)."""
        from modelyard.store.location import within

        trusted = [*self.trusted_stores, *([self.store] if self.trust_store and self.store else [])]
        return within(url, trusted)

    def data_folder(self) -> Path:
        """The control plane's data folder."""
        return self.data_dir or Path.home() / ".local" / "share" / "modelyard"
