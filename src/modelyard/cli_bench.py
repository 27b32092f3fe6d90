"""``modelyard bench``: load-test an endpoint (see :mod:`modelyard.loadtest`)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from modelyard.errors import ModelyardError, ValidationError
from modelyard.handlers import require
from modelyard.traffic import Trace, parse_distribution, read_trace, synthetic_trace

__all__ = ["bench_command"]

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

        async def listing() -> list[str]:
            return [o.key for o in await open_store(store_url).list() if not o.key.endswith("/")]

        names = asyncio.run(listing())
    else:
        raise ValidationError("Say which models to call: --store URL, --targets FILE or --trace FILE.")
    if not names:
        raise ValidationError("There are no target models to call (empty store or list).")
    return names[:models] if models else names


def _signer(region: str) -> Callable[[str, dict[str, str], bytes], dict[str, str]]:
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


def _progress(total: int | None) -> Callable[[Any], None] | None:
    if not sys.stderr.isatty():
        return None  # a log file gets the summary only

    def show(progress: Any) -> None:
        rate = progress.done / progress.elapsed if progress.elapsed else 0.0
        of = f"/{total:,}" if total else ""
        line = (
            f"\r{progress.elapsed:6.1f} s  {progress.done:,}{of} done  {rate:,.0f} req/s  {progress.errors:,} errors "
        )
        click.echo(line, nl=False, err=True)

    return show


@click.command("bench")
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
    for module in ("aiohttp", "matplotlib"):
        require(module, "bench")
    from modelyard.loadtest import LoadSpec, run_load
    from modelyard.report import summarise, terminal_table, write_html, write_json

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
    result = asyncio.run(run_load(spec, _progress(o["requests"])))
    click.echo("", err=True)
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
    write_json(summary, json_path)
    write_html(summary, result, o["report"], f"modelyard bench: {url}")
    click.echo(f"Reports: {o['report']} and {json_path}")
