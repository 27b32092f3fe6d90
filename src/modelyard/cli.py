"""The ``modelyard`` command: ``serve`` an endpoint, run the ``demo``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from pydantic import ValidationError as SettingsError

from modelyard import __version__
from modelyard.errors import ModelyardError

__all__ = ["main"]


def _settings(config: Path | None, **options: Any) -> Any:
    from modelyard.settings import Settings

    try:
        return Settings.load(config, **options)
    except SettingsError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise click.UsageError(problems) from exc


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="modelyard")
def main() -> None:
    """Multi-model endpoints on your own machines, speaking SageMaker's API."""


@main.command()
@click.argument("store", required=False)
@click.option(
    "--config",
    type=click.Path(path_type=Path, dir_okay=False),
    help="TOML settings file (overridden by env and options).",
)
@click.option("--endpoint-name", help="Endpoint name in /endpoints/{name}/invocations.  [default: modelyard]")
@click.option("--memory", help="Memory budget for loaded models, e.g. 2GiB.  [default: 2GiB]")
@click.option(
    "--disk-cache",
    type=click.Path(path_type=Path, file_okay=False),
    help="Folder for downloaded artifacts.  [default: ~/.cache/modelyard/ENDPOINT]",
)
@click.option("--disk", help="Byte budget of the disk cache, e.g. 10GiB.  [default: 10GiB]")
@click.option("--host", help="Address to bind.  [default: 127.0.0.1]")
@click.option("--port", type=int, help="Port to bind.  [default: 8080]")
@click.option("--s3-endpoint-url", help="S3-compatible endpoint (else AWS_ENDPOINT_URL or AWS).")
@click.option("--framework", help="Force a handler (xgboost) instead of detecting it per artifact.")
@click.option("--trust-store", is_flag=True, default=None, help="Allow formats that run code when loaded (pickle).")
@click.option("--eviction", type=click.Choice(["gdsf", "lru"]), help="Eviction policy.  [default: gdsf]")
@click.option(
    "--model-cache", type=click.Choice(["Enabled", "Disabled"]), help="Disabled unloads a model after each request."
)
@click.option(
    "--version-check-interval", type=float, help="Seconds between checks for a new artifact version.  [default: 5]"
)
@click.option("--preload", multiple=True, help="Target model to load at start-up (repeatable).")
@click.option("--pin", multiple=True, help="Target model to load at start-up and never evict (repeatable).")
@click.option(
    "--model-root",
    "model_roots",
    multiple=True,
    type=click.Path(path_type=Path, file_okay=False),
    help="Folder a control-plane ModelDataUrl may point into (repeatable).",
)
@click.option(
    "--log-level", type=click.Choice(["debug", "info", "warning", "error"]), help="Logging level.  [default: info]"
)
@click.option("--log-format", type=click.Choice(["text", "json"]), help="Log lines as text or JSON.  [default: text]")
@click.option(
    "--request-log-sample",
    type=click.FloatRange(0.0, 1.0),
    help="Fraction of requests logged on modelyard.requests.  [default: 0]",
)
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Control-plane state and its endpoints' caches.  [default: ~/.local/share/modelyard]",
)
@click.option("--control/--no-control", default=None, help="Serve the SageMaker control plane.  [default: on]")
@click.option(
    "--max-connections",
    type=click.IntRange(1),
    help="Open client connections at most.  [default: from the open-files limit, up to 4096]",
)
def serve(
    store: str | None,
    config: Path | None,
    s3_endpoint_url: str | None,
    preload: tuple[str, ...],
    pin: tuple[str, ...],
    model_roots: tuple[Path, ...],
    **options: Any,
) -> None:
    """Serve the models under STORE (a folder, file://, s3://bucket/prefix/, memory://).

    Without STORE only the control plane runs: create endpoints with boto3's
    `sagemaker` client or `modelyard endpoint create`.

    \b
    Invoke with boto3:
      boto3.client("sagemaker-runtime", endpoint_url="http://127.0.0.1:8080")
           .invoke_endpoint(EndpointName="modelyard", TargetModel="Houston_TX.tar.gz",
                            ContentType="text/csv", Body="1994,3188,5,1.5,1.62,3")
    """
    from modelyard.server.run import serve as run_server

    if s3_endpoint_url:
        options["store_options"] = {"endpoint": s3_endpoint_url}
    settings = _settings(
        config,
        store=store,
        preload=list(preload) or None,
        pin=list(pin) or None,
        model_roots=list(model_roots) or None,
        **options,
    )
    try:
        run_server(settings)
    except ModelyardError as exc:
        raise click.ClickException(exc.message) from exc


@main.command()
@click.option(
    "--models", type=click.IntRange(1, 100_000), default=10, show_default=True, help="Per-city models to train."
)
@click.option("--requests", type=click.IntRange(1), default=20, show_default=True, help="Random invocations to make.")
@click.option(
    "--workspace",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("modelyard-demo"),
    show_default=True,
    help="Folder for the store and the disk cache.",
)
@click.option("--store", "store_url", help="Store URL for the artifacts.  [default: WORKSPACE/models]")
def demo(models: int, requests: int, workspace: Path, store_url: str | None) -> None:
    """Train per-city house-price models, serve them, invoke them with boto3."""
    from modelyard.demo import run_demo

    workspace = workspace.resolve()
    try:
        run_demo(
            models=models,
            requests=requests,
            store_url=store_url or str(workspace / "models"),
            workspace=workspace,
            echo=click.echo,
        )
    except ModelyardError as exc:
        raise click.ClickException(exc.message) from exc


def _register() -> None:
    from modelyard.cli_bench import bench_command
    from modelyard.cli_endpoint import endpoint_group
    from modelyard.cli_plan import plan_command

    main.add_command(bench_command)
    main.add_command(endpoint_group)
    main.add_command(plan_command)


_register()
