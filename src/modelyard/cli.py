"""The ``modelyard`` command: ``serve`` an endpoint, run the ``demo``, ``bench``, ``plan``, ``endpoint``.

Only click is imported up front: every sub-command's module is imported when that
command runs (:class:`LazyGroup`), and every command imports its heavy machinery
(numpy, the frameworks, the server) inside its body, so ``modelyard --help`` and a
typo answer at once.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import click

from modelyard import __version__
from modelyard.cli_exit import run_guarded
from modelyard.cli_store import check_store
from modelyard.errors import ModelyardError

__all__ = ["LazyGroup", "main", "run"]

#: sub-commands defined in modules of their own: name -> (module:attribute, one-line help)
LAZY_COMMANDS: dict[str, tuple[str, str]] = {
    "bench": ("modelyard.cli_bench:bench_command", "Load-test an endpoint; write HTML and JSON reports."),
    "endpoint": ("modelyard.cli_endpoint:endpoint_group", "Create, list, describe, delete endpoints on a server."),
    "plan": ("modelyard.cli_plan:plan_command", "Recommend the cheapest endpoint for models and traffic."),
}


class LazyGroup(click.Group):
    """A group whose sub-commands are imported when they run, not when the group is built.

    click's documented pattern, plus the one-line help of each lazy command, so
    ``--help`` lists every command without importing any of them.
    """

    def __init__(self, *args: Any, lazy: dict[str, tuple[str, str]] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = dict(lazy or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy and cmd_name not in self.commands:
            module, _, attribute = self.lazy[cmd_name][0].partition(":")
            command = getattr(importlib.import_module(module), attribute)
            if not isinstance(command, click.Command):
                raise TypeError(f"{module}:{attribute} is not a click command")
            self.add_command(command, cmd_name)
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = []
        for name in self.list_commands(ctx):
            command = self.commands.get(name)
            if command is None:  # not imported: its help line is in the table
                rows.append((name, self.lazy[name][1]))
            elif not command.hidden:
                rows.append((name, command.get_short_help_str(formatter.width)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


def _settings(config: Path | None, **options: Any) -> Any:
    from pydantic import ValidationError as SettingsError

    from modelyard.settings import Settings

    try:
        return Settings.load(config, **options)
    except SettingsError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise click.UsageError(problems) from exc


@click.group(
    cls=LazyGroup,
    lazy=LAZY_COMMANDS,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(__version__, prog_name="modelyard")
def main() -> None:
    """Multi-model endpoints on your own machines, speaking SageMaker's API."""


def run() -> None:
    """The ``modelyard`` console script: :func:`main`, ended so that no native thread can crash the exit."""
    run_guarded(main)


@main.command(short_help="Serve the models under STORE (folder, s3://...).")
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
@click.option("--create-store", is_flag=True, help="Create the STORE folder when it does not exist.")
def serve(
    store: str | None,
    config: Path | None,
    s3_endpoint_url: str | None,
    preload: tuple[str, ...],
    pin: tuple[str, ...],
    model_roots: tuple[Path, ...],
    create_store: bool,
    **options: Any,
) -> None:
    """Serve the models under STORE (a folder, file://, s3://bucket/prefix/, memory://).

    Without STORE only the control plane runs: create endpoints with boto3's
    `sagemaker` client or `modelyard endpoint create`.

    \b
    Invoke with boto3 (any key works on a server without access keys):
      boto3.client("sagemaker-runtime", endpoint_url="http://127.0.0.1:8080", region_name="us-east-1",
                   aws_access_key_id="any", aws_secret_access_key="any")
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
    check_store(settings.store, create=create_store, hint=" (create it and copy artifacts in, or pass --create-store)")
    try:
        run_server(settings)
    except ModelyardError as exc:
        raise click.ClickException(exc.message) from exc


@main.command(short_help="Train house-price models, serve them, invoke them.")
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
    store_url = store_url or str(workspace / "models")
    check_store(store_url, create=True)  # the demo makes its own store
    try:
        run_demo(
            models=models,
            requests=requests,
            store_url=store_url,
            workspace=workspace,
            echo=click.echo,
        )
    except ModelyardError as exc:
        raise click.ClickException(exc.message) from exc
