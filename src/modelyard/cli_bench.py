"""``modelyard bench``: load-test an endpoint (see :mod:`modelyard.loadtest`).

A run is worth something only if the server answered: an unreachable server is
refused before the run, and a run in which no request succeeded writes its reports
(they show the errors) and exits with status 1 and the reason on one line.
"""

from __future__ import annotations

import asyncio
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import click

from modelyard.cli_store import check_store
from modelyard.errors import ModelyardError, ValidationError
from modelyard.progress import Progress

if TYPE_CHECKING:
    from modelyard.loadtest import Progress as LoadProgress
    from modelyard.traffic import Trace

__all__ = ["bench_command", "check_reachable", "worthless"]

HOUSE_ROW = b"1994,3188,5,1.5,1.62,3"


def _targets(store_url: str | None, targets_file: Path | None, models: int | None) -> list[str]:
    if targets_file is not None:
        try:
            names = [line.strip() for line in targets_file.read_text().splitlines()]
        except OSError as exc:
            raise ValidationError(f"Cannot read targets '{targets_file}': {exc}") from exc
        names = [n for n in names if n and not n.startswith("#")]
    elif store_url is not None:
        from modelyard.store import open_store

        click.echo(f"Listing the models in {store_url}...", err=True)

        async def listing() -> list[str]:
            return [o.key for o in await open_store(store_url).list() if not o.key.endswith("/")]

        names = asyncio.run(listing())
    else:
        raise ValidationError("Say which models to call: --store URL, --targets FILE or --trace FILE.")
    if not names:
        raise ValidationError("There are no target models to call (empty store or list).")
    return names[:models] if models else names


def _signer(region: str) -> Callable[[str, dict[str, str], bytes], dict[str, str]]:
    from modelyard.handlers import require

    botocore = require("botocore", "demo")
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest

    credentials = botocore.session.get_session().get_credentials()
    if credentials is None:
        raise ValidationError("--sign needs AWS credentials (environment, ~/.aws or an instance role).")

    def sign(url: str, headers: dict[str, str], body: bytes) -> dict[str, str]:
        request = AWSRequest(method="POST", url=url, data=body, headers=headers)
        SigV4Auth(credentials, "sagemaker", region).add_auth(request)
        return dict(request.headers.items())

    return sign


def check_reachable(url: str, timeout: float = 5.0) -> None:
    """Refuse a URL no server answers at (connection refused, unknown host, time-out), in one line."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValidationError(f"'{url}' is not an http:// or https:// URL of an endpoint.")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise ValidationError(f"'{url}' has an invalid port.") from exc
    try:
        socket.create_connection((parts.hostname, port), timeout=timeout).close()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ValidationError(f"No server answers at {url} ({reason}): nothing was measured.") from exc


def worthless(summary: dict[str, Any]) -> str | None:
    """Why a run measured nothing (no request succeeded), or None when it is worth reading."""
    if summary["succeeded"]:
        return None
    errors = summary["errors"]
    counts = ", ".join(f"{n:,} {code}" for code, n in sorted(errors.items(), key=lambda item: -item[1]))
    first = next(iter(summary["error_examples"].values()), "")
    example = f"; first: {first.splitlines()[0][:200]}" if first else ""
    return f"No request succeeded ({counts or 'none sent'}){example}."


def _shown(line: Progress) -> Callable[[LoadProgress], None]:
    def show(progress: LoadProgress) -> None:
        rate = progress.done / progress.elapsed if progress.elapsed else 0.0
        line.update(progress.done, note=f"{rate:,.0f} req/s, {progress.errors:,} errors")

    return show


@click.command("bench", short_help="Load-test an endpoint; write HTML and JSON reports.")
@click.argument("url")
@click.option("--endpoint", default="modelyard", show_default=True, help="EndpointName to invoke.")
@click.option("--store", "store_url", help="Call the models listed in this store.")
@click.option("--targets", "targets_file", type=click.Path(path_type=Path, dir_okay=False), help="One model a line.")
@click.option("--trace", "trace_file", type=click.Path(path_type=Path, dir_okay=False), help="Replay a trace file.")
@click.option("--models", type=click.IntRange(1), help="Use only the first N models.")
@click.option("--distribution", default="zipf:1.0", show_default=True, help="uniform, zipf or zipf:S.")
@click.option("--concurrency", type=click.IntRange(1, 4096), default=8, show_default=True, help="Closed-loop workers.")
@click.option("--rate", type=click.FloatRange(0, min_open=True), help="Open loop: requests/s (Poisson arrivals).")
@click.option("--requests", type=click.IntRange(1), help="Requests to send.  [default: 1000, or the whole trace]")
@click.option("--duration", type=click.FloatRange(0, min_open=True), help="Seconds to run.")
@click.option("--payload", type=click.Path(path_type=Path, dir_okay=False), help="Request body file.")
@click.option("--row", default=HOUSE_ROW.decode(), show_default=True, help="CSV row sent when no --payload.")
@click.option("--content-type", default="text/csv", show_default=True)
@click.option("--accept", default="text/csv", show_default=True)
@click.option(
    "--report", type=click.Path(path_type=Path, dir_okay=False), default=Path("modelyard-bench.html"), show_default=True
)
@click.option(
    "--json", "json_path", type=click.Path(path_type=Path, dir_okay=False), help="[default: REPORT with .json]"
)
@click.option("--sign", is_flag=True, help="Sign requests with SigV4 (for SageMaker itself).")
@click.option("--region", default="us-east-1", show_default=True, help="Region for --sign.")
@click.option("--seed", type=int, default=0, show_default=True)
def bench_command(url: str, **o: Any) -> None:
    """Load-test the endpoint at URL with realistic traffic; write an HTML and a JSON report.

    \b
    modelyard bench http://127.0.0.1:8080 --store ./models --distribution zipf:1.1 --duration 30
    """
    try:
        _run(url, **o)
    except ModelyardError as exc:
        raise click.ClickException(exc.message) from exc


def _run(url: str, **o: Any) -> None:
    from modelyard.handlers import require

    for module in ("aiohttp", "matplotlib"):
        require(module, "bench")
    from modelyard.loadtest import LoadSpec, run_load
    from modelyard.report import summarise, terminal_table, write_html, write_json
    from modelyard.traffic import parse_distribution, read_trace, synthetic_trace

    if o["trace_file"] is None and o["targets_file"] is None:
        check_store(o["store_url"], hint=": there are no models to call there")
    check_reachable(url)
    trace: Trace
    if o["trace_file"] is not None:
        trace = read_trace(o["trace_file"])
        if o["duration"] is None:  # a trace is replayed whole unless told otherwise
            o["requests"] = min(o["requests"] or len(trace), len(trace))
    else:
        if o["requests"] is None and o["duration"] is None:
            o["requests"] = 1000
        names = _targets(o["store_url"], o["targets_file"], o["models"])
        count = o["requests"] or max(int((o["rate"] or 2000) * o["duration"]) + 1, 1000)
        trace = synthetic_trace(names, count, parse_distribution(o["distribution"]), seed=o["seed"])
    try:
        payload = o["payload"].read_bytes() if o["payload"] is not None else o["row"].encode()
    except OSError as exc:
        raise ValidationError(f"Cannot read payload '{o['payload']}': {exc}") from exc
    spec = LoadSpec(
        url=url,
        endpoint=o["endpoint"],
        trace=trace,
        payload=payload,
        content_type=o["content_type"],
        accept=o["accept"],
        concurrency=o["concurrency"],
        rate=o["rate"],
        duration=o["duration"],
        requests=o["requests"],
        sign=_signer(o["region"]) if o["sign"] else None,
    )
    mode = f"open loop at {o['rate']:g} req/s" if o["rate"] else f"closed loop, {o['concurrency']} connections"
    click.echo(f"Calling {url} ({o['endpoint']}): {len(set(trace.targets)):,} models, {mode}.", err=True)
    with Progress("Sending", o["requests"]) as line:
        result = asyncio.run(run_load(spec, _shown(line)))
    result.spec = {
        "url": url,
        "endpoint": o["endpoint"],
        "mode": mode,
        "distribution": "trace" if o["trace_file"] else o["distribution"],
        "models": len(set(trace.targets)),
        "payload_bytes": len(payload),
        "command": " ".join(sys.argv[1:]),
    }
    summary = summarise(result)
    if not summary["requests"]:
        raise ValidationError("No request was sent.")
    click.echo(terminal_table(summary))
    json_path = o["json_path"] or o["report"].with_suffix(".json")
    click.echo(f"Writing the reports ({o['report']}, {json_path})...", err=True)
    try:
        write_json(summary, json_path)
        write_html(summary, result, o["report"], f"modelyard bench: {url}")
    except OSError as exc:
        raise ValidationError(f"Cannot write the report: {exc}") from exc
    click.echo(f"Reports: {o['report']} and {json_path}")
    failure = worthless(summary)
    if failure is not None:
        raise ValidationError(failure)
