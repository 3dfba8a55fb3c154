"""Fixtures for the operations tests: a clean Temporal environment and a TLS frontend before the dev server."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from tests.ops.tls_proxy import Pki, TlsProxy, make_pki

API_KEY = "stepflow-test-key"


@pytest.fixture(autouse=True)
def no_temporal_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[pytest.MonkeyPatch]:
    """No TEMPORAL_* / STEPFLOW_TEMPORAL_* variable or profile file of the machine running the tests leaks in."""
    for name in list(os.environ):
        if name.startswith(("TEMPORAL_", "STEPFLOW_TEMPORAL_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # the default profile file lives under $HOME
    yield monkeypatch


def upstream(env: WorkflowEnvironment) -> str:
    """The dev server's own (plain gRPC) address."""
    return env.client.service_client.config.target_host


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="session")
def other_pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """Certificates of another CA: what a wrongly configured client presents or trusts."""
    return make_pki(tmp_path_factory.mktemp("other-pki"), name="some other CA")


@pytest.fixture
async def api_key_frontend(dev_env: WorkflowEnvironment, pki: Pki) -> AsyncIterator[TlsProxy]:
    """TLS with an API key (Temporal Cloud's shape) before the session's dev server."""
    proxy = TlsProxy(upstream(dev_env), pki, api_key=API_KEY)
    async with proxy:
        yield proxy


@pytest.fixture
async def mtls_frontend(dev_env: WorkflowEnvironment, pki: Pki) -> AsyncIterator[TlsProxy]:
    """Mutual TLS (a self-hosted cluster's shape) before the session's dev server."""
    proxy = TlsProxy(upstream(dev_env), pki, client_auth=True)
    async with proxy:
        yield proxy
