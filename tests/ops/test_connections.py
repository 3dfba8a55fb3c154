"""Connections to a Temporal that is not a local dev server: TLS, mTLS, API keys, profiles, and their errors.

Where to connect comes from STEPFLOW_TEMPORAL_* over Temporal's TEMPORAL_* variables over the profile file;
the live tests run through a TLS frontend (tests/ops/tls_proxy.py) before the session's dev server.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from starter.executor import Executor
from stepflow.config import TemporalSettings, load_settings
from stepflow.db.projection import Projection
from stepflow.errors import ConfigError, InternalError
from stepflow.identity import LOCAL_ADMIN
from stepflow.models import ExecutionRequest, ExecutionStatus
from stepflow.temporal import connect
from stepflow.temporal_config import resolve
from tests.conftest import make_settings
from tests.ops.conftest import API_KEY
from tests.ops.tls_proxy import SERVER_NAME, Pki, TlsProxy
from worker.build import build_registry, build_worker


def write_profiles(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_defaults_when_nothing_is_configured() -> None:
    connection = resolve(load_settings().temporal)
    assert (connection.address.value, connection.namespace.value) == ("127.0.0.1:7233", "default")
    assert connection.tls.value is False
    assert connection.api_key.value is None
    assert "Temporal address: 127.0.0.1:7233 (from default)" in connection.describe()


def test_stepflow_variables_win_over_temporal_variables_which_win_over_the_profile(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    profiles = write_profiles(
        tmp_path / "temporal.toml",
        """
[profile.default]
address = "wrong-profile:7233"

[profile.prod]
address = "prod.example:7233"
namespace = "from-profile"
api_key = "key-from-profile"
[profile.prod.tls]
server_name = "prod.example"
""",
    )
    monkeypatch.setenv("TEMPORAL_CONFIG_FILE", str(profiles))
    monkeypatch.setenv("TEMPORAL_PROFILE", "prod")
    monkeypatch.setenv("TEMPORAL_NAMESPACE", "from-temporal-variable")
    monkeypatch.setenv("TEMPORAL_ADDRESS", "from-temporal-variable:7233")
    monkeypatch.setenv("STEPFLOW_TEMPORAL_ADDRESS", "from-stepflow:7233")

    connection = resolve(load_settings().temporal)

    assert (connection.profile, connection.config_file) == ("prod", profiles)
    assert (connection.address.value, connection.address.source) == ("from-stepflow:7233", "STEPFLOW_TEMPORAL_ADDRESS")
    assert (connection.namespace.value, connection.namespace.source) == ("from-temporal-variable", "TEMPORAL_NAMESPACE")
    assert connection.api_key.value == "key-from-profile"
    assert connection.api_key.source == f"api_key of profile 'prod' in {profiles}"
    assert connection.tls.value is True  # an API key turns TLS on, as in Temporal's own clients
    assert connection.server_name.value == "prod.example"
    described = "\n".join(connection.describe())
    assert "key-from-profile" not in described  # never print the secret, only whether there is one
    assert "Temporal profile: prod" in described and "Temporal API key: set" in described


def test_explicit_tls_off_wins_and_env_config_off_ignores_temporals_configuration(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TEMPORAL_ADDRESS", "cloud.example:7233")
    monkeypatch.setenv("TEMPORAL_API_KEY", "k")
    monkeypatch.setenv("STEPFLOW_TEMPORAL_TLS", "false")
    connection = resolve(load_settings().temporal)
    assert (connection.tls.value, connection.tls.source) == (False, "STEPFLOW_TEMPORAL_TLS")
    assert connection.address.value == "cloud.example:7233"

    monkeypatch.setenv("STEPFLOW_TEMPORAL_ENV_CONFIG", "false")
    ignored = resolve(load_settings().temporal)
    assert (ignored.address.value, ignored.api_key.value, ignored.profile) == ("127.0.0.1:7233", None, None)


def test_a_missing_profile_file_or_profile_is_a_config_error_naming_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("TEMPORAL_CONFIG_FILE", str(tmp_path / "absent.toml"))
    with pytest.raises(ConfigError, match=r"TEMPORAL_CONFIG_FILE=.*absent\.toml: no such file"):
        resolve(load_settings().temporal)

    monkeypatch.setenv(
        "TEMPORAL_CONFIG_FILE", str(write_profiles(tmp_path / "t.toml", '[profile.a]\naddress = "a:1"\n'))
    )
    monkeypatch.setenv("STEPFLOW_TEMPORAL_PROFILE", "staging")
    with pytest.raises(ConfigError, match="'staging' \\(STEPFLOW_TEMPORAL_PROFILE"):
        resolve(load_settings().temporal)


async def test_an_execution_runs_over_tls_with_an_api_key_from_temporal_variables(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, dev_env: WorkflowEnvironment, pki: Pki, api_key_frontend: TlsProxy
) -> None:
    """Temporal Cloud's shape: TLS with a server CA and an API key, set the way Temporal's own tools read them."""
    monkeypatch.setenv("TEMPORAL_ADDRESS", api_key_frontend.address)
    monkeypatch.setenv("TEMPORAL_API_KEY", API_KEY)
    monkeypatch.setenv("TEMPORAL_TLS_SERVER_CA_CERT_PATH", str(pki.ca))
    monkeypatch.setenv("TEMPORAL_TLS_SERVER_NAME", SERVER_NAME)
    settings = make_settings(tmp_path)

    client = await connect(settings.temporal)
    registry = build_registry(settings)
    projection = await Projection.open(settings.resolved_database_url)
    await projection.writer.upsert_tools([definition.info() for definition in registry.all()])
    executor = Executor(client, projection, settings, principal=LOCAL_ADMIN)
    try:
        async with build_worker(client, settings, registry, projection):
            result = await executor.execute_tool(ExecutionRequest(tool_id="echo", parameters={"over": "tls"}))
    finally:
        await executor.close()

    assert (result.status, result.output) == (ExecutionStatus.COMPLETED, {"over": "tls"})
    assert api_key_frontend.handler is not None
    assert api_key_frontend.handler.calls > 0 and api_key_frontend.handler.refused == 0


async def test_mutual_tls_from_a_profile_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, pki: Pki, mtls_frontend: TlsProxy
) -> None:
    profiles = write_profiles(
        tmp_path / "temporal.toml",
        f"""
[profile.cluster]
address = "{mtls_frontend.address}"
[profile.cluster.tls]
server_ca_cert_path = "{pki.ca}"
client_cert_path = "{pki.client_cert}"
client_key_path = "{pki.client_key}"
server_name = "{SERVER_NAME}"
""",
    )
    monkeypatch.setenv("STEPFLOW_TEMPORAL_CONFIG_FILE", str(profiles))
    monkeypatch.setenv("STEPFLOW_TEMPORAL_PROFILE", "cluster")
    settings = load_settings().temporal

    client = await connect(settings)
    assert (await client.count_workflows("WorkflowType='nothing-runs-this'")).count == 0
    described = resolve(settings).describe()
    assert f"Temporal address: {mtls_frontend.address} (from address of profile 'cluster' in {profiles})" in described
    assert f"Temporal TLS client certificate: {pki.client_cert} (from tls.client_cert of profile 'cluster'" in (
        "\n".join(described)
    )


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("wrong CA", r"not accepted by the CA in TEMPORAL_TLS_SERVER_CA_CERT_PATH"),
        ("wrong API key", r"refused the API key from TEMPORAL_API_KEY"),
        ("no API key", r"requires credentials and none were given: set TEMPORAL_API_KEY or STEPFLOW_TEMPORAL_API_KEY"),
        ("wrong server name", r"not valid for the name .*set TEMPORAL_TLS_SERVER_NAME"),
        ("TLS off", r"it may expect TLS, which is off \(STEPFLOW_TEMPORAL_TLS\)"),
    ],
)
async def test_a_refused_api_key_connection_names_the_setting(
    monkeypatch: pytest.MonkeyPatch, pki: Pki, other_pki: Pki, api_key_frontend: TlsProxy, case: str, expected: str
) -> None:
    variables = {
        "TEMPORAL_ADDRESS": api_key_frontend.address,
        "TEMPORAL_API_KEY": API_KEY,
        "TEMPORAL_TLS_SERVER_CA_CERT_PATH": str(pki.ca),
        "TEMPORAL_TLS_SERVER_NAME": SERVER_NAME,
    }
    if case == "wrong CA":
        variables["TEMPORAL_TLS_SERVER_CA_CERT_PATH"] = str(other_pki.ca)
    elif case == "wrong API key":
        variables["TEMPORAL_API_KEY"] = "not-the-key"
    elif case == "no API key":
        del variables["TEMPORAL_API_KEY"]
    elif case == "wrong server name":
        del variables["TEMPORAL_TLS_SERVER_NAME"]
    else:
        monkeypatch.setenv("STEPFLOW_TEMPORAL_TLS", "false")
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(InternalError, match=expected) as error:
        await connect(load_settings().temporal)
    assert "tonic" not in error.value.message and "Status {" not in error.value.message  # no transport stack


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        (
            "key of another pair",
            r"client key from STEPFLOW_TEMPORAL_TLS_CLIENT_KEY_PATH does not belong to the "
            r"client certificate from STEPFLOW_TEMPORAL_TLS_CLIENT_CERT_PATH",
        ),
        ("no client certificate", r"TLS handshake.*sent no client certificate"),
        ("certificate of another CA", r"TLS handshake.*sent the client certificate from STEPFLOW_TEMPORAL_TLS_CLIENT"),
    ],
)
async def test_a_refused_mtls_connection_names_the_setting(
    pki: Pki, other_pki: Pki, mtls_frontend: TlsProxy, case: str, expected: str
) -> None:
    cert, key = {
        "key of another pair": (pki.client_cert, other_pki.client_key),
        "no client certificate": (None, None),
        "certificate of another CA": (other_pki.client_cert, other_pki.client_key),
    }[case]
    settings = TemporalSettings(
        address=mtls_frontend.address,
        tls_server_ca_cert_path=pki.ca,
        tls_server_name=SERVER_NAME,
        tls_client_cert_path=cert,
        tls_client_key_path=key,
    )
    with pytest.raises(InternalError, match=expected):
        await connect(settings)


async def test_an_unreadable_certificate_file_is_a_config_error_naming_the_setting(tmp_path: Path) -> None:
    settings = TemporalSettings(address="127.0.0.1:1", tls_server_ca_cert_path=tmp_path / "missing-ca.pem")
    with pytest.raises(ConfigError, match=r"STEPFLOW_TEMPORAL_TLS_SERVER_CA_CERT_PATH: cannot read .*missing-ca\.pem"):
        await connect(settings)
