"""``modelyard endpoint``: create, list, describe and delete endpoints on a running server.

The commands are a thin client of the server's SageMaker control plane (boto3's
``sagemaker`` client with ``endpoint_url``), so what they do can equally be done from
boto3, the AWS CLI or a notebook. ``create`` makes a model, an endpoint config and
an endpoint, all named NAME; when any step fails it deletes what it made, so the
same command can simply be run again.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import click

from modelyard.cli_store import local_folder
from modelyard.progress import Progress

__all__ = ["endpoint_group", "resolve_model_data_url"]

DEFAULT_URL = "http://127.0.0.1:8080"


def _client(ctx: click.Context) -> Any:
    from modelyard.handlers import require

    boto3 = require("boto3", "demo")
    from botocore.config import Config

    options = ctx.obj
    session = boto3.session.Session()
    has_credentials = session.get_credentials() is not None
    return boto3.client(
        "sagemaker",
        endpoint_url=options["url"],
        region_name=options["region"],
        # a server without access keys accepts any signature; say so rather than fail on none
        aws_access_key_id=None if has_credentials else "modelyard",
        aws_secret_access_key=None if has_credentials else "modelyard",
        config=Config(retries={"total_max_attempts": 1, "mode": "standard"}),
    )


def _call(action: Any, *args: Any, **kwargs: Any) -> Any:
    from botocore.exceptions import ClientError, EndpointConnectionError, WaiterError

    try:
        return action(*args, **kwargs)
    except ClientError as exc:
        error = exc.response["Error"]
        raise click.ClickException(f"{error.get('Code')}: {error.get('Message')}") from exc
    except EndpointConnectionError as exc:
        raise click.ClickException(
            f"No server answers at {exc.kwargs.get('endpoint_url')}: start one with 'modelyard serve'."
        ) from exc
    except WaiterError as exc:
        last = exc.last_response or {}
        reason = last.get("FailureReason") or last.get("Error", {}).get("Message", "")
        raise click.ClickException(f"Waiting failed: {reason or exc}") from exc


def _show(doc: dict[str, Any]) -> None:
    doc = {k: v for k, v in doc.items() if k != "ResponseMetadata"}
    click.echo(json.dumps(doc, indent=2, default=str))


@click.group("endpoint", short_help="Create, list, describe, delete endpoints on a server.")
@click.option(
    "--url",
    default=lambda: os.environ.get("MODELYARD_URL", DEFAULT_URL),
    show_default=f"$MODELYARD_URL, else {DEFAULT_URL}",
    help="The server's address.",
)
@click.option("--region", default="us-east-1", show_default=True, help="Region in the server's ARNs.")
@click.pass_context
def endpoint_group(ctx: click.Context, url: str, region: str) -> None:
    """Manage the endpoints of a running server (its SageMaker control plane).

    \b
    The server is the one at --url, else at $MODELYARD_URL, else at
    http://127.0.0.1:8080 (where 'modelyard serve' listens by default):
      modelyard endpoint --url http://127.0.0.1:9000 list
      MODELYARD_URL=http://127.0.0.1:9000 modelyard endpoint list
    Requests are signed with boto3's credentials (AWS_* variables, ~/.aws) when it
    finds some, else with a placeholder key that a server without access keys accepts.
    """
    ctx.obj = {"url": url, "region": region}


def resolve_model_data_url(url: str) -> str:
    """A relative folder made absolute here, where the user typed it, not in the server's working folder."""
    folder = local_folder(url)
    if folder is None:
        return url
    return str(Path(folder).resolve())


@endpoint_group.command("create")
@click.argument("name")
@click.option(
    "--model-data-url",
    required=True,
    help="The store prefix of the artifacts: s3://..., or a folder on the server's host (a relative one is "
    "made absolute here).",
)
@click.option(
    "--image",
    default="auto",
    show_default=True,
    help="Handler: auto, xgboost, lightgbm, sklearn, onnx, mlflow, python.",
)
@click.option("--instance-type", default="ml.m5.large", show_default=True, help="Sets the memory budget per instance.")
@click.option("--instance-count", type=click.IntRange(1, 64), default=1, show_default=True)
@click.option("--model-cache", type=click.Choice(["Enabled", "Disabled"]), default="Enabled", show_default=True)
@click.option(
    "--env", "environment", multiple=True, help="Container environment KEY=VALUE (e.g. MODELYARD_TRUST_STORE=true)."
)
@click.option("--wait/--no-wait", default=True, show_default=True, help="Wait until InService.")
@click.option(
    "--timeout", type=click.FloatRange(0, min_open=True), default=600.0, show_default=True, help="Seconds to wait."
)
@click.pass_context
def create(ctx: click.Context, /, name: str, **o: Any) -> None:
    """Create endpoint NAME (with a model and a config of the same name)."""
    env = {}
    for pair in o["environment"]:
        key, sep, value = pair.partition("=")
        if not sep:
            raise click.BadParameter(f"'{pair}' is not KEY=VALUE", param_hint="--env")
        env[key] = value
    sm = _client(ctx)
    container = {
        "Image": o["image"],
        "ModelDataUrl": resolve_model_data_url(o["model_data_url"]),
        "Mode": "MultiModel",
        "Environment": env,
        "MultiModelConfig": {"ModelCacheSetting": o["model_cache"]},
    }
    variant = {
        "VariantName": "AllTraffic",
        "ModelName": name,
        "InstanceType": o["instance_type"],
        "InitialInstanceCount": o["instance_count"],
        "InitialVariantWeight": 1.0,
    }
    made: list[str] = []  # what this command created, to undo on failure
    try:
        _call(sm.create_model, ModelName=name, PrimaryContainer=container)
        made.append("model")
        _call(sm.create_endpoint_config, EndpointConfigName=name, ProductionVariants=[variant])
        made.append("config")
        _call(sm.create_endpoint, EndpointName=name, EndpointConfigName=name)
        made.append("endpoint")
        if o["wait"]:
            _wait_in_service(sm, name, o["timeout"])
    except click.ClickException as exc:
        _roll_back(sm, name, made)
        raise click.ClickException(f"{exc.message} (nothing was left behind: fix it and run the same command)") from exc
    except KeyboardInterrupt:
        click.echo(
            f"\nStopped waiting; endpoint {name} is still being created. Check it with 'modelyard endpoint describe "
            f"{name}', remove it with 'modelyard endpoint delete {name} --all'.",
            err=True,
        )
        raise
    _show(_call(sm.describe_endpoint, EndpointName=name))


def _wait_in_service(sm: Any, name: str, timeout: float) -> None:
    """Poll until ``name`` is InService, showing each status it goes through; a Failed one is an error."""
    deadline = time.monotonic() + timeout
    with Progress(f"Endpoint {name}:", None, note_lines=True) as line:
        while True:
            status = _call(sm.describe_endpoint, EndpointName=name)
            state = status["EndpointStatus"]
            line.update(0, note=state)
            if state == "InService":
                return
            if state == "Failed":
                line.close(f"Failed: {status.get('FailureReason', 'no reason given')}")
                raise click.ClickException(f"Endpoint {name} failed: {status.get('FailureReason', 'no reason given')}")
            if time.monotonic() > deadline:
                line.close(f"still {state}")
                raise click.ClickException(f"Endpoint {name} is not InService after {timeout:g} s (still {state}).")
            for _ in range(5):  # keep the spinner turning between polls
                time.sleep(0.1)
                line.tick()


def _roll_back(sm: Any, name: str, made: list[str]) -> None:
    """Delete what ``create`` made, newest first; say the exact cleanup command if that fails too."""
    if not made:
        return
    click.echo(f"Creating {name} failed: deleting the {', '.join(reversed(made))} it created...", err=True)
    try:
        if "endpoint" in made:
            _call(sm.delete_endpoint, EndpointName=name)
            _wait_deleted(sm, name)
        if "config" in made:
            _call(sm.delete_endpoint_config, EndpointConfigName=name)
        if "model" in made:
            _call(sm.delete_model, ModelName=name)
    except click.ClickException as exc:
        click.echo(
            f"Could not delete them ({exc.message}): run 'modelyard endpoint delete {name} --all' to clean up.",
            err=True,
        )


def _wait_deleted(sm: Any, name: str, timeout: float = 120.0) -> None:
    from botocore.exceptions import ClientError

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            sm.describe_endpoint(EndpointName=name)
        except ClientError:
            return  # gone
        time.sleep(0.2)
    raise click.ClickException(f"Endpoint {name} was not deleted within {timeout:g} s.")


@endpoint_group.command("list")
@click.pass_context
def list_endpoints(ctx: click.Context) -> None:
    """List endpoints with their status."""
    for summary in _call(_client(ctx).list_endpoints, MaxResults=100)["Endpoints"]:
        click.echo(
            f"{summary['EndpointName']:<40} {summary['EndpointStatus']:<12} {summary['CreationTime']:%Y-%m-%d %H:%M:%S}"
        )


@endpoint_group.command("describe")
@click.argument("name")
@click.pass_context
def describe(ctx: click.Context, name: str) -> None:
    """Describe endpoint NAME."""
    _show(_call(_client(ctx).describe_endpoint, EndpointName=name))


@endpoint_group.command("delete")
@click.argument("name")
@click.option(
    "--all", "everything", is_flag=True, help="Also delete the model and config named NAME (those that exist)."
)
@click.option("--wait/--no-wait", default=True, show_default=True)
@click.pass_context
def delete(ctx: click.Context, name: str, everything: bool, wait: bool) -> None:
    """Delete endpoint NAME (requests in flight finish first)."""
    sm = _client(ctx)
    deleted = []
    steps = [("endpoint", sm.delete_endpoint, {"EndpointName": name})]
    if everything:
        steps += [
            ("endpoint config", sm.delete_endpoint_config, {"EndpointConfigName": name}),
            ("model", sm.delete_model, {"ModelName": name}),
        ]
    for kind, action, arguments in steps:
        try:
            _call(action, **arguments)
        except click.ClickException as exc:
            # with --all, a piece already gone is not an error: the rest still gets cleaned up
            if not everything or "Could not find" not in exc.message:
                raise
            continue
        deleted.append(kind)
        if kind == "endpoint" and wait:
            _wait_deleted(sm, name)
    if not deleted:
        raise click.ClickException(f"There is no endpoint, endpoint config or model named {name}.")
    click.echo(f"Deleted {name} ({', '.join(deleted)}).")
