"""MLflow models, as ``mlflow.pyfunc.save_model`` and every flavour's ``save_model`` write them.

The artifact is a folder holding an ``MLmodel`` file (as a folder in the store, or
a ``model.tar.gz`` of it); it is loaded with ``mlflow.pyfunc.load_model``, which
runs code (pickles, loader modules, the model's ``code`` folder), so it loads only
from a trusted store. MLflow is imported when the first MLflow model loads (or at
start with ``--framework mlflow``): the import takes seconds and tens of MiB that an
endpoint without MLflow models should not pay. How requests are read and answered:
:mod:`modelyard.handlers.mlflow_model`.
"""

from __future__ import annotations

import gc
import importlib.util
import logging
import re
import sys
import warnings
from pathlib import Path
from typing import Any

from modelyard.errors import ArtifactInvalid
from modelyard.handlers.base import Handler, Model
from modelyard.handlers.mlflow_model import MLflowInput, MLflowModel, first_line, forget_code, quiet_import

__all__ = ["MLflowHandler", "MLflowInput", "MLflowModel"]

log = logging.getLogger("modelyard.handlers")

_MLMODEL = "MLmodel"
_SCRIPT = "inference.py"
#: modules a flavour may need, and the modelyard extra that installs them
_EXTRAS = {"xgboost": "xgboost", "lightgbm": "lightgbm", "onnxruntime": "onnx", "onnx": "onnx"}
_IN_EXTRA = {"mlflow", "pandas", "sklearn", "skops", "joblib", "cloudpickle"}
_CODE = re.compile(r"^\s+code:\s*['\"]?([^'\"\s#]+)['\"]?\s*$", re.MULTILINE)


def _missing_package(name: str | None, folder: Path) -> str:
    top = (name or "?").split(".")[0]
    extra = _EXTRAS.get(top)
    command = f"pip install 'modelyard[mlflow,{extra}]'" if extra else "pip install 'modelyard[mlflow]'"
    message = f"The MLflow model needs the '{top}' package, which is not installed: {command}"
    requirements = folder / "requirements.txt"
    if extra is None and top not in _IN_EXTRA and requirements.is_file():
        listed = [r.strip() for r in requirements.read_text(errors="replace").splitlines()]
        listed = [r for r in listed if r and not r.startswith(("#", "-"))]
        message += f", and the model's requirements.txt ({', '.join(listed[:10])})"
    return message + "."


class MLflowHandler(Handler):
    """Loads MLflow model folders through ``mlflow.pyfunc`` from a trusted store (see module doc)."""

    name = "mlflow"
    module = "mlflow.pyfunc"
    import_at_start = False  # seconds and tens of MiB: paid by the first MLflow model, not every endpoint
    priority = 2  # the MLmodel says how its folder's files (model.pkl, model.xgb...) are read
    python_objects = True  # pyfunc wrappers, pandas and the flavour's objects are Python objects

    def __init__(self) -> None:
        self._checked: set[tuple[str, str]] = set()

    def preimport(self) -> bool:
        """Import MLflow quietly; a broken install is reported when a model loads, with the pip command."""
        if importlib.util.find_spec("mlflow") is None:
            return False
        try:
            quiet_import(self.module)
        except ArtifactInvalid as exc:
            log.warning("MLflow is not usable: %s", exc.message)
            return False
        return True

    def find(self, root: Path) -> Path | None:
        """The shallowest ``MLmodel`` file; None when two are equally shallow."""
        found = sorted((p for p in root.rglob(_MLMODEL) if p.is_file()), key=lambda p: (len(p.parts), p))
        if len(found) > 1 and len(found[1].parts) == len(found[0].parts):
            return None
        return found[0] if found else None

    def rank(self, root: Path, model_file: Path) -> int:
        """Below ``inference.py`` (SageMaker's layout, whose ``model_fn`` loads the MLflow model),
        unless that script is part of the model's own code folder (``code_paths``)."""
        code = [
            (model_file.parent / match).resolve()
            for match in _CODE.findall(model_file.read_text(errors="replace"))
            if match.lower() not in ("null", "none", "~")
        ]
        scripts = [p.resolve() for p in root.rglob(_SCRIPT) if p.is_file()]
        if any(not any(script.is_relative_to(folder) for folder in code) for script in scripts):
            return 0
        return self.priority

    def _check_requirements(self, folder: Path) -> None:
        """MLflow's warning about requirements this environment does not satisfy, once per distinct list.

        ``load_model`` checks on every load (the slowest part of a small model's load) and
        would log the same warning for each of a thousand models saved alike.
        """
        path = folder / "requirements.txt"
        text = path.read_text(errors="replace") if path.is_file() else ""
        if ("requirements", text) in self._checked:
            return
        self._checked.add(("requirements", text))
        lines = [line.strip() for line in text.splitlines()]
        listed = [line for line in lines if line and not line.startswith(("#", "-"))]
        if listed:
            quiet_import("mlflow.utils.requirements_utils").warn_dependency_requirement_mismatches(listed)

    def _check_python(self, loaded: Any) -> None:
        """A warning when the model was saved by another Python (major.minor), once per version."""
        saved = str(loaded.metadata.flavors.get("python_function", {}).get("python_version") or "")
        if ("python", saved) in self._checked:
            return
        self._checked.add(("python", saved))
        running = f"{sys.version_info.major}.{sys.version_info.minor}"
        if saved and saved.split(".")[:2] != running.split("."):
            log.warning(
                "MLflow models saved with Python %s run here on Python %s: they may not load or predict alike.",
                saved,
                running,
            )

    def load(self, model_file: Path, *, trusted: bool) -> Model:
        if not trusted:
            raise ArtifactInvalid(
                f"The artifact is an MLflow model ({_MLMODEL}): mlflow.pyfunc.load_model runs the model's code "
                "(pickles, loader modules) as it loads, so it is served only from a trusted store. Start the "
                "server with --trust-store (or trust_store = true, MODELYARD_TRUST_STORE=1) if you trust "
                "everyone who can write to it."
            )
        folder = model_file.parent
        pyfunc = quiet_import("mlflow.pyfunc")
        errors = quiet_import("mlflow.exceptions")
        self._check_requirements(folder)
        before = set(sys.path)
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")  # logged, not raised
                loaded = pyfunc.load_model(str(folder), suppress_warnings=True)
        except ModuleNotFoundError as exc:
            forget_code([p for p in sys.path if p not in before])
            raise ArtifactInvalid(_missing_package(exc.name, folder)) from exc
        except errors.MlflowException as exc:
            forget_code([p for p in sys.path if p not in before])
            raise ArtifactInvalid(f"MLflow could not load the model: {first_line(exc.message)}") from exc
        except Exception as exc:  # unpickling and loader modules fail in many ways
            forget_code([p for p in sys.path if p not in before])
            raise ArtifactInvalid(
                f"MLflow could not load the model: {type(exc).__name__}: {first_line(str(exc))}"
            ) from exc
        for warning in caught:
            log.warning("loading the MLflow model %s: %s", folder.name, warning.message)
        self._check_python(loaded)
        model = MLflowModel(loaded, folder, [p for p in sys.path if p not in before])
        model.warm_up()
        # MLflow's load leaves cyclic garbage (parsed YAML, metadata objects) ten times the size of
        # a small model, and the measurement holds the collector off: collect the youngest
        # generation, which holds what this load allocated, so only what the model keeps is counted.
        gc.collect(0)
        return model
