"""``modelyard endpoint``: create, list, describe and delete endpoints on a running server.

The commands are a thin client of the server's SageMaker control plane (boto3's
``sagemaker`` client with ``endpoint_url``), so what they do can equally be done from
boto3, the AWS CLI or a notebook. ``create`` makes a model, an endpoint config and
an endpoint, all named NAME.
"""

from __future__ import annotations

import json
import os
from typing import Any

import click

from modelyard.handlers import require

__all__ = ["endpoint_group"]


def _client(ctx: click.Context) -> Any:
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


@click.group("endpoint")
@click.option(
    "--url",
    default=lambda: os.environ.get("MODELYARD_URL", "http://127.0.0.1:8080"),
    show_default="http://127.0.0.1:8080 or $MODELYARD_URL",
    help="The server.",
)
@click.option("--region", default="us-east-1", show_default=True)
@click.pass_context
def endpoint_group(ctx: click.Context, url: str, region: str) -> None:
    """Manage the endpoints of a running server (its SageMaker control plane)."""
    ctx.obj = {"url": url, "region": region}


@endpoint_group.command("create")
@click.argument("name")
@click.option("--model-data-url", required=True, help="The store prefix of the artifacts (s3://…, a folder).")
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
        "ModelDataUrl": o["model_data_url"],
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
    _call(sm.create_model, ModelName=name, PrimaryContainer=container)
    _call(sm.create_endpoint_config, EndpointConfigName=name, ProductionVariants=[variant])
    _call(sm.create_endpoint, EndpointName=name, EndpointConfigName=name)
    if o["wait"]:
        _call(
            sm.get_waiter("endpoint_in_service").wait,
            EndpointName=name,
            WaiterConfig={"Delay": 0.5, "MaxAttempts": 240},
        )
    _show(_call(sm.describe_endpoint, EndpointName=name))


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
@click.option("--all", "everything", is_flag=True, help="Also delete the model and config named NAME.")
@click.option("--wait/--no-wait", default=True, show_default=True)
@click.pass_context
def delete(ctx: click.Context, name: str, everything: bool, wait: bool) -> None:
    """Delete endpoint NAME (requests in flight finish first)."""
    sm = _client(ctx)
    _call(sm.delete_endpoint, EndpointName=name)
    if wait:
        _call(
            sm.get_waiter("endpoint_deleted").wait, EndpointName=name, WaiterConfig={"Delay": 0.2, "MaxAttempts": 600}
        )
    if everything:
        _call(sm.delete_endpoint_config, EndpointConfigName=name)
        _call(sm.delete_model, ModelName=name)
    click.echo(f"Deleted {name}.")
