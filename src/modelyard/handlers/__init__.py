"""Handlers: the framework code between an unpacked artifact and predictions.

:class:`Loader` picks the handler for an artifact from its content: every handler
looks for its model file, and exactly one must find one (or the endpoint forces a
framework). An ``inference.py`` outranks the rest: the other files are the data its
``model_fn`` reads; an MLflow ``MLmodel`` outranks the single-file rules, since it
says how its folder's files are read. Nothing matching, or two handlers matching, is a clear
:class:`~modelyard.errors.ArtifactInvalid` naming what the artifact holds. The rules
of each handler are in ``docs/frameworks.md``.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from modelyard import sizing
from modelyard.errors import ArtifactInvalid, ModelyardError, ValidationError, release_frames
from modelyard.handlers.base import Handler, Model, TensorSpec, installed, require
from modelyard.handlers.lightgbm import LightGBMHandler
from modelyard.handlers.memory import small_python_objects
from modelyard.handlers.mlflow import MLflowHandler
from modelyard.handlers.onnx import ONNXHandler
from modelyard.handlers.python import PythonHandler
from modelyard.handlers.sklearn import SklearnHandler
from modelyard.handlers.xgboost import XGBoostHandler

__all__ = ["HANDLERS", "Handler", "Loader", "Model", "TensorSpec", "frameworks", "import_soon", "require"]

#: every handler modelyard ships, by name
HANDLERS: dict[str, Handler] = {
    handler.name: handler
    for handler in (
        XGBoostHandler(),
        LightGBMHandler(),
        SklearnHandler(),
        ONNXHandler(),
        PythonHandler(),
        MLflowHandler(),
    )
}


def frameworks(handlers: dict[str, Handler] | None = None) -> dict[str, str | None]:
    """Each handler's framework version as installed (None: not installed), without importing it."""
    distributions = importlib.metadata.packages_distributions()
    found: dict[str, str | None] = {}
    for name, handler in (handlers or HANDLERS).items():
        if not handler.module:
            found[name] = "built in"
        elif not installed(handler.module):
            found[name] = None
        else:
            dists = distributions.get(handler.module, [])
            found[name] = importlib.metadata.version(dists[0]) if dists else "installed"
    return found


_importing: threading.Thread | None = None
_importing_lock = threading.Lock()


def _import(handlers: list[Handler]) -> list[str]:
    """Import the installed frameworks of ``handlers``; the modules imported."""
    imported = []
    for handler in handlers:
        with sizing.measuring():  # an import allocates: never inside a load's measuring window
            if handler.preimport():
                imported.append(handler.module)
    return imported


def import_soon() -> threading.Thread:
    """Import every installed framework on a thread of its own, once per process.

    A server starts answering (and its endpoints reach InService) at once; a request
    for a model whose framework is still being imported waits for that import only.
    """
    global _importing
    with _importing_lock:
        if _importing is None:
            handlers = [h for h in HANDLERS.values() if h.import_at_start]
            _importing = threading.Thread(target=_import, args=(handlers,), name="modelyard-imports")
            _importing.start()
        return _importing


def _listing(root: Path, limit: int = 8) -> str:
    files = [str(p.relative_to(root)) for p in sorted(root.rglob("*")) if p.is_file()]
    shown = ", ".join(files[:limit]) + (f" and {len(files) - limit} more" if len(files) > limit else "")
    return shown or "no files"


@contextmanager
def _load_errors(root: Path) -> Iterator[None]:
    """A failed load's error: it keeps nothing alive, and names files by their path in the artifact.

    Framework and user code put absolute paths in their messages (``model_fn`` gets
    the folder's path); clients must not see them, so they are rewritten here. The
    frames of the error drop their locals (:func:`~modelyard.errors.release_frames`).
    """
    try:
        yield
    except BaseException as exc:
        release_frames(exc)  # a model file read into memory must not live on in the error
        if not isinstance(exc, ModelyardError):
            raise
        message = exc.message
        for folder in dict.fromkeys((str(root), os.path.realpath(root))):
            message = message.replace(folder + os.sep, "").replace(folder, ".")
        for folder in dict.fromkeys((str(root.parent.parent), os.path.realpath(root.parent.parent))):
            if len(folder) > 1:
                message = message.replace(folder, "(disk cache)")
        if message != exc.message:
            exc.message = message
            exc.args = (message,)
        raise


class Loader:
    """Turns an unpacked artifact folder into a loaded :class:`Model`."""

    def __init__(
        self, framework: str = "auto", *, trusted: bool = False, handlers: dict[str, Handler] | None = None
    ) -> None:
        self.handlers = dict(handlers or HANDLERS)
        if framework != "auto" and framework not in self.handlers:
            raise ValidationError(
                f"Unknown framework '{framework}'; use auto or one of {', '.join(sorted(self.handlers))}."
            )
        self.framework = framework
        self.trusted = trusted
        self._warm: set[str] = set()

    def import_frameworks(self) -> list[str]:
        """Import the installed frameworks this loader may use now (blocking).

        A handler with ``import_at_start`` off is imported only when the endpoint is forced to it.
        """
        forced = self.framework != "auto"
        chosen = [self.handlers[self.framework]] if forced else list(self.handlers.values())
        return _import([h for h in chosen if h.import_at_start or forced])

    def detect(self, root: Path) -> tuple[Handler, Path]:
        """The handler for the artifact in ``root`` and the file it will load."""
        chosen = [self.handlers[self.framework]] if self.framework != "auto" else list(self.handlers.values())
        found = [(h, f) for h in chosen if (f := h.find(root)) is not None]
        if not found:
            wanted = self.framework if self.framework != "auto" else "any framework"
            raise ArtifactInvalid(f"The artifact holds no model file for {wanted} (found: {_listing(root)}).")
        if len(found) > 1:
            ranks = [h.rank(root, f) for h, f in found]
            found = [pair for pair, rank in zip(found, ranks, strict=True) if rank == max(ranks)]
        if len(found) > 1:
            names = ", ".join(f"{h.name} ({f.name})" for h, f in found)
            raise ArtifactInvalid(f"The artifact matches several frameworks: {names}; force one with --framework.")
        return found[0]

    def load(self, root: Path) -> Model:
        """Detect the handler and load the model."""
        with _load_errors(root):
            handler, model_file = self.detect(root)
            return handler.load(model_file, trusted=self.trusted)

    def load_measured(
        self, root: Path, measure: Callable[[Callable[[], Model]], tuple[Model, int]]
    ) -> tuple[Model, int]:
        """Load and measure the model's memory with ``measure``.

        A framework's first load in a process also pays for its one-time set-up
        (imports, global pools); that first model is loaded once unmeasured, so no
        model is charged for the framework itself. For handlers whose models are
        Python objects (``Handler.python_objects``) the small objects the C heap
        measurement cannot see are added (:mod:`modelyard.handlers.memory`).
        """
        with _load_errors(root):
            return self._load_measured(root, measure)

    def _load_measured(
        self, root: Path, measure: Callable[[Callable[[], Model]], tuple[Model, int]]
    ) -> tuple[Model, int]:
        handler, model_file = self.detect(root)
        if handler.name not in self._warm:
            handler.load(model_file, trusted=self.trusted).unload()
            self._warm.add(handler.name)
        if not handler.python_objects:
            return measure(lambda: handler.load(model_file, trusted=self.trusted))
        small = 0

        def load() -> Model:
            nonlocal small
            model, small = small_python_objects(lambda: handler.load(model_file, trusted=self.trusted))
            return model

        model, size = measure(load)
        return model, size + small
