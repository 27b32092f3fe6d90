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

from collections.abc import Callable
from pathlib import Path

from modelyard.errors import ArtifactInvalid, ValidationError
from modelyard.handlers.base import Handler, Model, TensorSpec, require
from modelyard.handlers.lightgbm import LightGBMHandler
from modelyard.handlers.memory import small_python_objects
from modelyard.handlers.mlflow import MLflowHandler
from modelyard.handlers.onnx import ONNXHandler
from modelyard.handlers.python import PythonHandler
from modelyard.handlers.sklearn import SklearnHandler
from modelyard.handlers.xgboost import XGBoostHandler

__all__ = ["HANDLERS", "Handler", "Loader", "Model", "TensorSpec", "require"]

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


def _listing(root: Path, limit: int = 8) -> str:
    files = [str(p.relative_to(root)) for p in sorted(root.rglob("*")) if p.is_file()]
    shown = ", ".join(files[:limit]) + (f" and {len(files) - limit} more" if len(files) > limit else "")
    return shown or "no files"


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
        """Import the installed frameworks now, so no first request pays for it.

        A handler with ``import_at_start`` off is imported only when the endpoint is forced to it.
        """
        forced = self.framework != "auto"
        chosen = [self.handlers[self.framework]] if forced else list(self.handlers.values())
        imported = []
        for handler in chosen:
            if (handler.import_at_start or forced) and handler.preimport():
                imported.append(handler.module)
        return imported

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
