"""Where to connect to Temporal and how: STEPFLOW_TEMPORAL_* over Temporal's own environment configuration.

Temporal's SDKs and CLI share one way to configure a client (:mod:`temporalio.envconfig`): the ``TEMPORAL_*``
variables (``TEMPORAL_ADDRESS``, ``TEMPORAL_NAMESPACE``, ``TEMPORAL_API_KEY``, ``TEMPORAL_TLS``,
``TEMPORAL_TLS_SERVER_CA_CERT_PATH``, ``TEMPORAL_TLS_CLIENT_CERT_PATH``, ``TEMPORAL_TLS_CLIENT_KEY_PATH``,
``TEMPORAL_TLS_SERVER_NAME``, ...) over a profile of a TOML file (``TEMPORAL_CONFIG_FILE``, else
``~/.config/temporalio/temporal.toml``; profile ``TEMPORAL_PROFILE``, else ``default``). The SDK reads them;
:func:`resolve` lays the ``STEPFLOW_TEMPORAL_*`` values that are set on top and remembers where each value
came from, so that ``--verbose`` can say it and a refused connection can name the setting to fix.

Precedence, highest first: a ``STEPFLOW_TEMPORAL_*`` variable that is set, a ``TEMPORAL_*`` variable, the
profile, the defaults of :class:`~stepflow.config.TemporalSettings` (``127.0.0.1:7233``, ``default``, no TLS).
``STEPFLOW_TEMPORAL_ENV_CONFIG=false`` ignores Temporal's configuration altogether.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from temporalio.envconfig import ClientConfigProfile, ClientConfigTLS, DataSource
from temporalio.service import TLSConfig

from stepflow.config import TemporalSettings
from stepflow.errors import ConfigError

T = TypeVar("T")

DEFAULT_PROFILE = "default"
DEFAULT_CONFIG_FILE = Path("~/.config/temporalio/temporal.toml")

# the TEMPORAL_* variables that set each value (the SDK reads them; these names are for saying where from)
_TEMPORAL_VARIABLES: dict[str, tuple[str, ...]] = {
    "address": ("TEMPORAL_ADDRESS",),
    "namespace": ("TEMPORAL_NAMESPACE",),
    "api_key": ("TEMPORAL_API_KEY",),
    "tls": ("TEMPORAL_TLS",),
    "server_ca": ("TEMPORAL_TLS_SERVER_CA_CERT_PATH", "TEMPORAL_TLS_SERVER_CA_CERT_DATA"),
    "client_cert": ("TEMPORAL_TLS_CLIENT_CERT_PATH", "TEMPORAL_TLS_CLIENT_CERT_DATA"),
    "client_key": ("TEMPORAL_TLS_CLIENT_KEY_PATH", "TEMPORAL_TLS_CLIENT_KEY_DATA"),
    "server_name": ("TEMPORAL_TLS_SERVER_NAME",),
}
# the STEPFLOW_TEMPORAL_* field of each value, and the profile file's key
_STEPFLOW_FIELDS = {
    "address": "address",
    "namespace": "namespace",
    "api_key": "api_key",
    "tls": "tls",
    "server_ca": "tls_server_ca_cert_path",
    "client_cert": "tls_client_cert_path",
    "client_key": "tls_client_key_path",
    "server_name": "tls_server_name",
}
_PROFILE_KEYS = {
    "address": "address",
    "namespace": "namespace",
    "api_key": "api_key",
    "tls": "tls.disabled",
    "server_ca": "tls.server_ca_cert",
    "client_cert": "tls.client_cert",
    "client_key": "tls.client_key",
    "server_name": "tls.server_name",
}
DEFAULT_SOURCE = "default"


@dataclass(frozen=True)
class Sourced(Generic[T]):
    """A connection value and where it came from: a variable's name, a profile's key, or ``default``."""

    value: T
    source: str = DEFAULT_SOURCE

    @property
    def is_set(self) -> bool:
        return self.source != DEFAULT_SOURCE


@dataclass(frozen=True)
class TemporalConnection:
    """Everything :func:`stepflow.temporal.connect` needs, each value with its source."""

    profile: str | None
    config_file: Path | None
    address: Sourced[str]
    namespace: Sourced[str]
    api_key: Sourced[str | None] = Sourced(None)
    tls: Sourced[bool] = Sourced(False)
    server_ca: Sourced[DataSource | None] = Sourced(None)
    client_cert: Sourced[DataSource | None] = Sourced(None)
    client_key: Sourced[DataSource | None] = Sourced(None)
    server_name: Sourced[str | None] = Sourced(None)
    rpc_metadata: Mapping[str, str] = field(default_factory=dict)

    def tls_config(self) -> bool | TLSConfig:
        """False, or the TLS settings (certificates read now: a missing file is a ConfigError naming it)."""
        if not self.tls.value:
            return False
        return TLSConfig(
            server_root_ca_cert=_read(self.server_ca),
            domain=self.server_name.value,
            client_cert=_read(self.client_cert),
            client_private_key=_read(self.client_key),
        )

    def connect_options(self) -> dict[str, Any]:
        """Keyword arguments of ``Client.connect`` (without the converter, interceptors and runtime)."""
        return {
            "target_host": self.address.value,
            "namespace": self.namespace.value,
            "api_key": self.api_key.value,
            "tls": self.tls_config(),
            "rpc_metadata": dict(self.rpc_metadata),
        }

    def describe(self) -> list[str]:
        """What ``--verbose`` prints: the profile, then each value in use and where it came from (no secrets)."""
        where = str(self.config_file) if self.config_file is not None else "no profile file"
        lines = [
            f"Temporal profile: {self.profile or 'none (STEPFLOW_TEMPORAL_ENV_CONFIG=false)'} ({where})",
            f"Temporal address: {self.address.value} (from {self.address.source})",
            f"Temporal namespace: {self.namespace.value} (from {self.namespace.source})",
            f"Temporal API key: {'set' if self.api_key.value else 'none'} (from {self.api_key.source})",
            f"Temporal TLS: {'on' if self.tls.value else 'off'} (from {self.tls.source})",
        ]
        if self.tls.value:
            for label, value in (
                ("server CA", self.server_ca),
                ("client certificate", self.client_cert),
                ("client key", self.client_key),
                ("server name", self.server_name),
            ):
                unset = "the system's CAs" if label == "server CA" else "none"
                shown = unset if value.value is None else _shown(value.value)
                lines.append(f"Temporal TLS {label}: {shown} (from {value.source})")
        return lines


def _shown(value: DataSource | str) -> str:
    return str(value) if isinstance(value, Path) or (isinstance(value, str) and "\n" not in value) else "inline PEM"


def _read(value: Sourced[DataSource | None]) -> bytes | None:
    data = value.value
    if data is None:
        return None
    if isinstance(data, Path):
        try:
            return data.expanduser().read_bytes()
        except OSError as exc:
            raise ConfigError(f"{value.source}: cannot read {data}: {exc.strerror or exc}") from None
    return data.encode() if isinstance(data, str) else data


def _profile_name(settings: TemporalSettings, environ: Mapping[str, str]) -> tuple[str, str]:
    if settings.profile is not None:
        return settings.profile, "STEPFLOW_TEMPORAL_PROFILE"
    if environ.get("TEMPORAL_PROFILE"):
        return environ["TEMPORAL_PROFILE"], "TEMPORAL_PROFILE"
    return DEFAULT_PROFILE, DEFAULT_SOURCE


def _config_file(settings: TemporalSettings, environ: Mapping[str, str]) -> tuple[Path | None, str]:
    """The profile file to read and the setting that named it; a named file that is missing is a ConfigError."""
    for path, name in (
        (settings.config_file, "STEPFLOW_TEMPORAL_CONFIG_FILE"),
        (environ.get("TEMPORAL_CONFIG_FILE"), "TEMPORAL_CONFIG_FILE"),
    ):
        if path:
            named = Path(path).expanduser()
            if not named.is_file():
                raise ConfigError(f"{name}={path}: no such file (Temporal's profile file)")
            return named, name
    default = DEFAULT_CONFIG_FILE.expanduser()
    return (default if default.is_file() else None), DEFAULT_SOURCE


def _load_profile(
    settings: TemporalSettings, environ: Mapping[str, str]
) -> tuple[ClientConfigProfile, str, Path | None]:
    """The SDK's profile (file, then TEMPORAL_* on top); ConfigError for an unreadable file or unknown profile."""
    profile, profile_source = _profile_name(settings, environ)
    path, _ = _config_file(settings, environ)
    try:
        loaded = ClientConfigProfile.load(
            profile=profile,
            config_source=path,
            disable_file=path is None,
            override_env_vars=dict(environ),
        )
    except Exception as exc:  # the SDK's own ConfigError, from its native core: not importable by name
        if profile_source == DEFAULT_SOURCE and "not found" in str(exc):  # a file without a default profile
            return ClientConfigProfile.load(disable_file=True, override_env_vars=dict(environ)), profile, None
        where = f"{path}" if path is not None else "no profile file"
        raise ConfigError(
            f"cannot use Temporal profile {profile!r} ({profile_source}; {where}): {str(exc).splitlines()[0]}"
        ) from None
    return loaded, profile, path


def _temporal_values(loaded: ClientConfigProfile) -> dict[str, Any]:
    tls = loaded.tls or ClientConfigTLS()
    return {
        "address": loaded.address,
        "namespace": loaded.namespace,
        "api_key": loaded.api_key,
        "tls": None if tls.disabled is None else not tls.disabled,
        "server_ca": tls.server_root_ca_cert,
        "client_cert": tls.client_cert,
        "client_key": tls.client_private_key,
        "server_name": tls.server_name,
    }


def _stepflow_value(settings: TemporalSettings, name: str) -> Any:
    value = getattr(settings, _STEPFLOW_FIELDS[name])
    return value.get_secret_value() if name == "api_key" and value is not None else value


def resolve(settings: TemporalSettings, environ: Mapping[str, str] | None = None) -> TemporalConnection:
    """The connection these settings and Temporal's environment configuration (``environ``: os.environ) describe."""
    environ = os.environ if environ is None else environ
    values: dict[str, Sourced[Any]] = {}
    profile: str | None = None
    path: Path | None = None
    rpc_metadata: Mapping[str, str] = {}
    if settings.env_config:
        loaded, profile, path = _load_profile(settings, environ)
        rpc_metadata = loaded.grpc_meta
        for name, value in _temporal_values(loaded).items():
            if value is not None:
                variable = next((v for v in _TEMPORAL_VARIABLES[name] if environ.get(v)), None)
                file_key = f"{_PROFILE_KEYS[name]} of profile {profile!r} in {path}"
                values[name] = Sourced(value, variable or file_key)
    for name, field_name in _STEPFLOW_FIELDS.items():
        if field_name in settings.model_fields_set and getattr(settings, field_name) is not None:
            values[name] = Sourced(_stepflow_value(settings, name), f"STEPFLOW_TEMPORAL_{field_name.upper()}")
    if "tls" not in values:  # as Temporal does: an API key or TLS files turn TLS on
        implied = next((values[n] for n in ("api_key", "server_ca", "client_cert", "server_name") if n in values), None)
        values["tls"] = Sourced(True, implied.source) if implied is not None else Sourced(False)
    return TemporalConnection(
        profile=profile,
        config_file=path,
        address=values.get("address", Sourced(settings.address)),
        namespace=values.get("namespace", Sourced(settings.namespace)),
        rpc_metadata=rpc_metadata,
        **{
            name: values[name]
            for name in ("api_key", "tls", "server_ca", "client_cert", "client_key", "server_name")
            if name in values
        },
    )


__all__ = ["Sourced", "TemporalConnection", "resolve"]
