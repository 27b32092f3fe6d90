"""The Open Inference Protocol's statistics and model configuration extensions.

tritonclient calls them (``get_inference_statistics``, ``get_model_config``), as
Triton's HTTP API defines them:

* ``GET /v2/models/stats`` and ``GET /v2/models/{name}[/versions/{v}]/stats``: per
  model, requests answered and failed, their total time (from the per-model latency
  histogram, :mod:`modelyard.stats`) and the last one's time. modelyard does not time
  queueing and the input, infer and output steps apart: those counts are 0. Without a
  name, the models in memory are listed.
* ``GET /v2/models/{name}/config``: the model's inputs and outputs with Triton's type
  names (``TYPE_FP32``), loading the model if needed; ``max_batch_size`` 0 (a row
  dimension of -1 in the dims instead).

A target model whose name ends in ``/stats`` or ``/config`` is therefore reached
through these extensions, as on Triton.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from modelyard.artifacts import validate_target
from modelyard.endpoint import Endpoint
from modelyard.errors import ModelNotLoaded
from modelyard.handlers import TensorSpec
from modelyard.server import tensors
from modelyard.server.context import served
from modelyard.server.headers import headers_of

__all__ = ["routes"]

_ZERO = {"count": 0, "ns": 0}


def _model_stats(instance: Endpoint, target: str) -> dict[str, Any] | None:
    totals = instance.metrics.models.totals(target)
    if totals is None:
        return None
    requests, errors, last_used, seconds = totals
    entry = instance.cache.get(target)
    succeeded = requests - errors
    return {
        "name": target,
        "version": entry.version if entry is not None else "",
        "last_inference": int(last_used * 1000),
        "inference_count": succeeded,
        "execution_count": succeeded,
        "inference_stats": {
            "success": {"count": succeeded, "ns": int(seconds * 1e9)},
            "fail": {"count": errors, "ns": 0},
            "queue": _ZERO,
            "compute_input": _ZERO,
            "compute_infer": _ZERO,
            "compute_output": _ZERO,
        },
        "batch_stats": [],
    }


async def statistics(request: Request) -> Response:
    """``GET /v2/models[/{name}[/versions/{v}]]/stats``."""
    endpoint = served(request)
    name = request.path_params.get("name")
    if name is None:
        stats = [
            found
            for instance in endpoint.instances()
            for entry in sorted(instance.cache.entries(), key=lambda e: e.target)
            if (found := _model_stats(instance, entry.target)) is not None
        ]
        return JSONResponse({"model_stats": stats})
    target = validate_target(name)
    found = _model_stats(endpoint.route(target, headers_of(request.scope).variant), target)
    if found is None:
        raise ModelNotLoaded(f"No statistics for model '{target}': it has never been loaded.")
    return JSONResponse({"model_stats": [found]})


def _tensor(spec: TensorSpec) -> dict[str, Any]:
    return {"name": spec.name, "data_type": f"TYPE_{tensors.datatype(spec.dtype)}", "dims": list(spec.shape)}


async def configuration(request: Request) -> Response:
    """``GET /v2/models/{name}/config``: inputs and outputs, loading the model if needed."""
    target = validate_target(request.path_params["name"])
    instance = served(request).route(target, headers_of(request.scope).variant)
    async with instance.cache.use(target) as entry:
        inputs, outputs = entry.model.signature()
        return JSONResponse(
            {
                "name": target,
                "platform": entry.model.handler,
                "backend": entry.model.handler,
                "version_policy": {"latest": {"num_versions": 1}},
                "max_batch_size": 0,
                "input": [_tensor(s) for s in inputs],
                "output": [_tensor(s) for s in outputs],
            }
        )


def routes() -> list[BaseRoute]:
    """The extension routes, to be placed before ``/v2/models/{name}`` (its name would swallow them)."""
    return [
        Route("/v2/models/stats", statistics, methods=["GET"]),
        Route("/v2/models/{name:path}/versions/{version}/stats", statistics, methods=["GET"]),
        Route("/v2/models/{name:path}/stats", statistics, methods=["GET"]),
        Route("/v2/models/{name:path}/config", configuration, methods=["GET"]),
    ]
