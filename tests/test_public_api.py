from __future__ import annotations

import modelyard
import modelyard.errors


def test_all_names_exist_and_errors_are_all_exported() -> None:
    for name in modelyard.__all__:
        assert hasattr(modelyard, name), name
    for name in modelyard.errors.__all__:
        assert name in modelyard.__all__, name


def test_every_error_has_a_code_and_status() -> None:
    for name in modelyard.errors.__all__:
        error = getattr(modelyard.errors, name)
        assert error.code, name
        assert 400 <= error.status < 600, name
    assert modelyard.ModelError("x").extra() == {"OriginalStatusCode": 400, "OriginalMessage": "x"}
    assert issubclass(modelyard.StoreError, modelyard.ServiceUnavailable)


def test_every_export_has_one_source_and_resolves_to_it() -> None:
    import importlib

    lazy = set(modelyard.__all__) - {"__version__"}
    assert set(modelyard._SOURCES) == lazy
    for name, source in modelyard._SOURCES.items():
        assert getattr(modelyard, name) is getattr(importlib.import_module(source), name), name
    assert set(modelyard.__all__) <= set(dir(modelyard))
