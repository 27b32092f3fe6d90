"""A user's ``inference.py``, following the SageMaker inference toolkit's conventions.

The artifact holds ``code/inference.py`` (SageMaker's layout) or ``inference.py``;
its presence outranks every other handler, since the other files are the data its
``model_fn`` reads. The module defines:

* ``model_fn(model_dir)`` (required): load and return the model;
* ``input_fn(body, content_type)`` (optional): the request body to the model's
  input; by default JSON, CSV, LIBSVM and ``.npy`` bodies become ``float64`` rows;
* ``predict_fn(data, model)`` (optional): predictions; by default ``model.predict(data)``;
* ``output_fn(prediction, accept)`` (optional): the response body, or a
  ``(body, content_type)`` pair; by default JSON, CSV or ``.npy`` per Accept;
* or ``transform_fn(model, body, content_type, accept)`` alone, instead of the three.

A function may take one more argument than these (the toolkit's ``context``); it
gets None. Running the module runs code, so it loads only from a trusted store.
Anything the user's code raises becomes a :class:`ModelError` (424) carrying its
message, at load time (a syntax error, a failing ``model_fn``) as at request time;
an exception with an integer ``status_code`` (the toolkit's
``GenericInferenceToolkitError``) keeps it as OriginalStatusCode.

The module is compiled under a private name, with its folder on ``sys.path`` while
it is imported and ``model_fn`` runs, so helper modules beside it can be imported
then; those names are shared by the whole process, so give helpers unique names.
``code/requirements.txt`` is not installed: install dependencies with modelyard.
"""

from __future__ import annotations

import inspect
import itertools
import sys
import types
from collections.abc import Callable, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from modelyard import codecs
from modelyard.errors import ArtifactInvalid, ModelError, ModelyardError
from modelyard.handlers.base import Handler, Model, TensorSpec

__all__ = ["PythonHandler", "PythonModel"]

_ENTRY = "inference.py"
_HOOKS = ("model_fn", "input_fn", "predict_fn", "output_fn", "transform_fn")
_ARITY = {"model_fn": 1, "input_fn": 2, "predict_fn": 2, "output_fn": 2, "transform_fn": 4}
_counter = itertools.count()


def _user_error(step: str, exc: BaseException) -> ModelError:
    status = getattr(exc, "status_code", None)
    original = status if isinstance(status, int) and 400 <= status < 600 else 500
    return ModelError(f"{step} raised {type(exc).__name__}: {exc}", original_status=original)


def _caller(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` called with the toolkit's arguments, plus None for a trailing ``context``."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return fn
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    required = [p for p in positional if p.default is p.empty]
    if len(required) > _ARITY[name]:
        return lambda *args: fn(*args, *([None] * (len(required) - len(args))))
    return fn


@contextmanager
def _importable(folder: Path) -> Any:
    sys.path.insert(0, str(folder))
    try:
        yield
    finally:
        if str(folder) in sys.path:
            sys.path.remove(str(folder))


def _response(result: Any, accept: str) -> tuple[bytes, str]:
    media = accept if accept and "*" not in accept else "application/json"
    if isinstance(result, tuple) and len(result) == 2:
        result, media = result[0], str(result[1])
    if isinstance(result, str):
        return result.encode(), media
    if isinstance(result, bytes | bytearray | memoryview):
        return bytes(result), media
    raise ModelError(
        f"output_fn returned a {type(result).__name__}; it must return bytes or str (or (body, content_type)).",
        original_status=500,
    )


class PythonModel(Model):
    """The model ``model_fn`` returned, served through the user's functions (see module doc)."""

    handler = "python"
    dtype = np.float64
    threaded = True  # user code may block: never on the event loop

    def __init__(self, module: types.ModuleType, model: Any, hooks: dict[str, Callable[..., Any]]) -> None:
        self.module = module
        self.model = model
        self.hooks = hooks

    def _call(self, step: str, *args: Any) -> Any:
        try:
            return self.hooks[step](*args)
        except ModelyardError:
            raise
        except Exception as exc:  # the user's code failed: ModelError with its message
            raise _user_error(step, exc) from exc

    def predict(self, data: Any) -> Any:
        if "predict_fn" in self.hooks:
            return self._call("predict_fn", data, self.model)
        try:
            return self.model.predict(data)
        except Exception as exc:
            raise _user_error("predict_fn (the default, model.predict)", exc) from exc

    def invoke(
        self, body: bytes, content_type: str, accept: str, custom_attributes: str | None = None
    ) -> tuple[bytes, str]:
        accept = accept if accept and accept != "*/*" else "application/json"
        if "transform_fn" in self.hooks:
            return _response(self._call("transform_fn", self.model, body, content_type, accept), accept)
        if "input_fn" in self.hooks:
            data = self._call("input_fn", body, content_type)
        else:
            data = codecs.decode(body, codecs.content_type(content_type), None, self.dtype)
        prediction = self.predict(data)
        if "output_fn" in self.hooks:
            return _response(self._call("output_fn", prediction, accept), accept)
        return codecs.encode(prediction, codecs.accept_type(accept, "application/json"))

    def infer(self, inputs: Mapping[str, np.ndarray], outputs: Sequence[str] = ()) -> dict[str, Any]:
        """Tensors go to ``predict_fn`` as they are (one array, or a dict for several).

        A ``transform_fn``-only module gets the single input as an ``application/x-npy``
        body and must answer ``.npy``.
        """
        data: Any = next(iter(inputs.values())) if len(inputs) == 1 else dict(inputs)
        if "transform_fn" in self.hooks:
            if not isinstance(data, np.ndarray):
                raise ModelError("This model defines transform_fn, which takes one input tensor.")
            npy, _ = codecs.encode(data, "application/x-npy")
            result = self._call("transform_fn", self.model, npy, "application/x-npy", "application/x-npy")
            prediction: Any = codecs.load_npy(_response(result, "application/x-npy")[0])
        else:
            prediction = self.predict(data)
        if isinstance(prediction, dict):
            named = {str(k): np.asarray(v) for k, v in prediction.items()}
        else:
            named = {"predict": np.asarray(prediction)}
        wanted = list(outputs) or list(named)
        unknown = [name for name in wanted if name not in named]
        if unknown:
            raise ModelError(f"The model has no output '{unknown[0]}'; it answered {', '.join(named)}.")
        return {name: named[name] for name in wanted}

    def signature(self) -> tuple[list[TensorSpec], list[TensorSpec]]:
        dtype = np.dtype(np.float64)  # the user's code decides; rows of numbers by default
        return [TensorSpec("input-0", dtype, (-1, -1))], [TensorSpec("predict", dtype, (-1,))]

    def unload(self) -> None:
        sys.modules.pop(self.module.__name__, None)
        self.model = None
        self.hooks = {}


class PythonHandler(Handler):
    """Loads an ``inference.py`` from a trusted store (see module doc)."""

    name = "python"
    priority = 1  # the script decides how the artifact's other files are read
    python_objects = True  # whatever model_fn builds may be plain Python objects

    def find(self, root: Path) -> Path | None:
        candidates = sorted(root.rglob(_ENTRY))
        if len(candidates) > 1:
            candidates = [p for p in (root / "code" / _ENTRY, root / _ENTRY) if p in candidates][:1]
        return candidates[0] if len(candidates) == 1 and candidates[0].is_file() else None

    def load(self, model_file: Path, *, trusted: bool) -> Model:
        if not trusted:
            raise ArtifactInvalid(
                f"The artifact has {model_file.parent.name}/{_ENTRY}, Python code that runs when the model loads: "
                "it is served only from a trusted store. Start the server with --trust-store "
                "(or trust_store = true, MODELYARD_TRUST_STORE=1) if you trust everyone who can write to it."
            )
        model_dir = model_file.parent.parent if model_file.parent.name == "code" else model_file.parent
        name = f"_modelyard_inference_{next(_counter)}"
        module = types.ModuleType(name)
        module.__file__ = str(model_file)
        sys.modules[name] = module
        try:
            with _importable(model_file.parent):
                try:
                    code = compile(model_file.read_bytes(), str(model_file), "exec")
                except SyntaxError as exc:
                    raise ModelError(
                        f"{_ENTRY} has a syntax error at line {exc.lineno}: {exc.msg}", original_status=500
                    ) from exc
                try:
                    exec(code, module.__dict__)  # noqa: S102 - the operator trusts this store
                except (Exception, SystemExit) as exc:
                    raise _user_error(f"importing {_ENTRY}", exc) from exc
                hooks = {h: _caller(h, fn) for h in _HOOKS if callable(fn := getattr(module, h, None))}
                if "model_fn" not in hooks:
                    raise ArtifactInvalid(f"{_ENTRY} defines no model_fn(model_dir); it must, to load the model.")
                if "transform_fn" in hooks and hooks.keys() & {"input_fn", "predict_fn", "output_fn"}:
                    raise ArtifactInvalid(
                        f"{_ENTRY} defines transform_fn together with input_fn, predict_fn or output_fn; "
                        "use transform_fn alone or the other three."
                    )
                try:
                    model = hooks["model_fn"](str(model_dir))
                except ModelyardError:
                    raise
                except (Exception, SystemExit) as exc:
                    raise _user_error("model_fn", exc) from exc
        except BaseException:
            sys.modules.pop(name, None)
            raise
        if not hooks.keys() & {"predict_fn", "transform_fn"} and not callable(getattr(model, "predict", None)):
            sys.modules.pop(name, None)
            raise ArtifactInvalid(
                f"{_ENTRY} defines neither predict_fn nor transform_fn, and model_fn returned a "
                f"{type(model).__name__}, which has no predict method."
            )
        return PythonModel(module, model, hooks)
