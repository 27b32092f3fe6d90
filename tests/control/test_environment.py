"""A container's Environment: one precedence, every setting either applied or refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from modelyard.control.deploy import Registry
from modelyard.control.deployer import EndpointDeployer
from modelyard.control.environment import INSTANCE_SETTINGS, instance_settings
from modelyard.errors import ControlValidation
from modelyard.instances import InstanceTable
from modelyard.settings import Settings

#: a value each instance setting accepts, and what it becomes
VALUES: dict[str, tuple[str, Any]] = {
    "memory": ("100MiB", 100 * 1024**2),
    "disk": ("1GiB", 1024**3),
    "eviction": ("lru", "lru"),
    "version_check_interval": ("2.5", 2.5),
    "load_wait_timeout": ("7", 7.0),
    "max_concurrent_loads": ("3", 3),
    "max_inflight": ("9", 9),
    "max_payload": ("1000", 1000),
    "max_unpacked": ("2GiB", 2 * 1024**3),
    "inline_payload": ("4KiB", 4096),
    "preload": ('["a.tar.gz"]', ["a.tar.gz"]),
    "pin": ('["b.tar.gz"]', ["b.tar.gz"]),
    "request_log_sample": ("0.25", 0.25),
}


def test_every_instance_setting_has_a_case() -> None:
    assert set(VALUES) == INSTANCE_SETTINGS


@pytest.fixture
def deployer(tmp_path: Path) -> EndpointDeployer:
    base = Settings.load(data_dir=tmp_path, eviction="gdsf", max_inflight=100)
    return EndpointDeployer(base, Registry(), InstanceTable.load(), tmp_path, host_memory=64 * 1024**3)


def model(environment: dict[str, str], image: str = "xgboost", cache: str = "Enabled") -> dict[str, Any]:
    container = {
        "Image": image,
        "ModelDataUrl": "s3://bucket/models/",
        "Environment": environment,
        "MultiModelConfig": {"ModelCacheSetting": cache},
    }
    return {"ModelName": "m", "PrimaryContainer": container}


VARIANT = {"VariantName": "AllTraffic", "InstanceType": "ml.m4.xlarge"}


@pytest.mark.parametrize("name", sorted(INSTANCE_SETTINGS))
def test_each_instance_setting_reaches_the_instance(deployer: EndpointDeployer, name: str) -> None:
    raw, expected = VALUES[name]
    settings = deployer._settings("e", VARIANT, model({f"MODELYARD_{name.upper()}": raw}), 0)
    assert getattr(settings, name) == expected


@pytest.mark.parametrize("name", sorted(set(Settings.model_fields) - INSTANCE_SETTINGS))
def test_every_other_setting_is_refused(name: str) -> None:
    with pytest.raises(ControlValidation, match=f"MODELYARD_{name.upper()}"):
        instance_settings({f"MODELYARD_{name.upper()}": "x"})


def test_the_api_fields_come_last(deployer: EndpointDeployer) -> None:
    plain = deployer._settings("e", VARIANT, model({}), 0)
    assert plain.memory == deployer.budget("ml.m4.xlarge")  # the instance type's budget
    assert (plain.eviction, plain.max_inflight) == ("gdsf", 100)  # the server's settings
    settings = deployer._settings("e", VARIANT, model({"MODELYARD_MAX_INFLIGHT": "5"}, "lightgbm", "Disabled"), 0)
    assert (settings.max_inflight, settings.framework, settings.model_cache) == (5, "lightgbm", "Disabled")
    assert settings.trust_store is False  # trust never comes from the caller


@pytest.mark.parametrize(
    ("environment", "message"),
    [
        ({"MODELYARD_MEMORY": "ten"}, "not valid"),
        ({"MODELYARD_REQUEST_LOG_SAMPLE": "2"}, "less than or equal to 1"),
        ({"MODELYARD_PIN": "a.tar.gz"}, "JSON list"),
        ({"MODELYARD_EVICTION": "fifo"}, "not valid"),
        ({"MODELYARD_TRUST_STORE": "true"}, "only the operator"),
        ({"MODELYARD_FRAMEWORK": "python"}, "Image"),
        ({"MODELYARD_MODEL_CACHE": "Disabled"}, "ModelCacheSetting"),
        ({"MODELYARD_STORE": "/"}, "ModelDataUrl"),
        ({"MODELYARD_NOTHING": "1"}, "names no modelyard setting"),
    ],
)
def test_refusals_say_why(environment: dict[str, str], message: str) -> None:
    with pytest.raises(ControlValidation, match=message):
        instance_settings(environment)


def test_other_keys_are_kept_but_unused() -> None:
    assert instance_settings({"SAGEMAKER_PROGRAM": "inference.py", "MY_FLAG": "1"}) == {}
