"""deploy/compose.yml agrees with the code: its services, ports and variables are the ones the settings read.

There is no container engine here, so the file is parsed (YAML) and checked structurally: every ``STEPFLOW_*`` /
``OTEL_*`` variable it sets is a setting and its value loads, addresses name services and the ports they open,
the projection's URL names the projection's database and credentials, the search attributes are the code's.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic_settings import BaseSettings
from sqlalchemy.engine import make_url

from stepflow import search_attributes
from stepflow.config import Settings, TracingSettings, load_settings, load_tracing_settings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
_DEFAULT = re.compile(r"\$\{(\w+):?-([^}]*)\}")


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yml").read_text())
    return loaded


def interpolated(value: object) -> str:
    """A Compose value with each ``${NAME:-default}`` replaced by its default."""
    return _DEFAULT.sub(lambda match: match.group(2), str(value))


def environment(service: dict[str, Any]) -> dict[str, str]:
    return {name: interpolated(value) for name, value in (service.get("environment") or {}).items()}


def setting_variables() -> set[str]:
    names = set()
    for name, field in Settings.model_fields.items():
        group = field.annotation
        if isinstance(group, type) and issubclass(group, BaseSettings):
            names |= {f"{group.model_config.get('env_prefix', '')}{sub.upper()}" for sub in group.model_fields}
        else:
            names.add(f"STEPFLOW_{name.upper()}")
    return names | {f"OTEL_{field.upper()}" for field in TracingSettings.model_fields}  # read when connecting


def container_ports(service: dict[str, Any]) -> set[int]:
    published = [str(port).rsplit(":", 1)[-1] for port in service.get("ports", [])]
    return {int(port) for port in [*published, *map(str, service.get("expose", []))]}


def test_the_production_shape_has_its_services() -> None:
    services = compose()["services"]
    assert {"temporal", "temporal-db", "temporal-ui", "projection-db", "worker", "api"} <= set(services)
    assert services["worker"]["command"] == ["stepflow", "worker"]
    assert services["api"]["command"] == ["stepflow", "api"]
    assert services["temporal"]["environment"]["DB"].startswith("postgres")  # Temporal persists to PostgreSQL
    assert services["temporal"]["environment"]["POSTGRES_SEEDS"] == "temporal-db"
    assert 8080 in container_ports(services["temporal-ui"])


@pytest.mark.parametrize("name", ["worker", "api"])
def test_stepflow_services_set_only_real_settings_and_their_values_load(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    services = compose()["services"]
    env = environment(services[name])
    known = setting_variables() | {"OTEL_SERVICE_NAME", "OTEL_EXPORTER_OTLP_ENDPOINT"}  # read by OpenTelemetry
    unknown = sorted(var for var in env if var.startswith(("STEPFLOW_", "OTEL_")) and var not in known)
    assert not unknown, f"{name} sets variables nothing reads: {unknown}"

    for var in list(os.environ):
        if var.startswith(("STEPFLOW_", "OTEL_", "TEMPORAL_")):
            monkeypatch.delenv(var)
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    settings = load_settings()  # a ConfigError naming the variable if a value were wrong
    load_tracing_settings()

    host, _, port = settings.temporal.address.rpartition(":")
    assert host in services and int(port) in container_ports(services[host])
    assert settings.temporal.address == services["temporal-ui"]["environment"]["TEMPORAL_ADDRESS"]
    assert settings.metrics.address is not None
    assert int(settings.metrics.address.rpartition(":")[2]) in container_ports(services[name])

    url = make_url(settings.resolved_database_url)
    database = environment(services[url.host or ""])
    assert url.drivername == "postgresql+asyncpg" and url.host == "projection-db" and url.port == 5432
    assert (url.username, url.password, url.database) == (
        database["POSTGRES_USER"],
        database["POSTGRES_PASSWORD"],
        database["POSTGRES_DB"],
    )
    assert "projection-db" in services[name]["depends_on"] and "temporal" in services[name]["depends_on"]


def test_the_search_attributes_created_are_the_codes() -> None:
    command = compose()["services"]["search-attributes"]["command"]
    names = [command[i + 1] for i, arg in enumerate(command) if arg == "--name"]
    types = [command[i + 1] for i, arg in enumerate(command) if arg == "--type"]
    assert names == [key.name for key in search_attributes.ALL_KEYS]
    assert set(types) == {"Keyword"}


def test_the_image_installs_every_package_of_the_distribution() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    project = tomllib.loads((DEPLOY.parent / "pyproject.toml").read_text())
    packages = [pattern.rstrip("*") for pattern in project["tool"]["setuptools"]["packages"]["find"]["include"]]
    assert packages
    for package in packages:
        assert f"COPY {package} {package}" in dockerfile
    assert compose()["services"]["worker"]["build"]["dockerfile"] == "deploy/Dockerfile"
