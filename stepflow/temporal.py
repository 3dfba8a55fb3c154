"""Connecting to Temporal with the shared data converter, and a clear error when the connection fails.

Where and how to connect comes from :func:`stepflow.temporal_config.resolve` (``STEPFLOW_TEMPORAL_*`` over
Temporal's environment configuration). A refused connection becomes an InternalError that says what went
wrong in words and names the setting to fix (the CA that does not sign the server's certificate, the API key
the server refused, the client key that does not match its certificate, ...), never the SDK's transport
error chain.
"""

from __future__ import annotations

from temporalio.client import Client

from stepflow.config import TemporalSettings
from stepflow.converter import DATA_CONVERTER
from stepflow.errors import InternalError
from stepflow.observability import prometheus, tracing
from stepflow.temporal_config import TemporalConnection, resolve

_SERVER_CA_VARIABLES = "TEMPORAL_TLS_SERVER_CA_CERT_PATH or STEPFLOW_TEMPORAL_TLS_SERVER_CA_CERT_PATH"
# how a server that refuses the client's certificate (or its absence) shows: it hangs up during or right after
# the handshake, and which of these the SDK reports depends on the timing
_HANDSHAKE_CLOSED = ("connection closed", "Cancelled", "close_notify", "handshake", "HandshakeFailure", "broken pipe")


async def connect(settings: TemporalSettings) -> Client:
    """A client for the resolved address / namespace / credentials; a clear InternalError when it fails."""
    connection = resolve(settings)
    options = connection.connect_options()  # reads the certificate files: ConfigError naming a missing one
    runtime = prometheus.temporal_runtime()  # the SDK's metrics go where /metrics reads them, once it is served
    interceptors = tracing.interceptors()  # Temporal's tracing interceptor when OTEL_TRACES_EXPORTER is set
    try:
        return await Client.connect(
            data_converter=DATA_CONVERTER, runtime=runtime, interceptors=interceptors, **options
        )
    except RuntimeError as exc:
        raise connect_error(connection, str(exc)) from None


def connect_error(connection: TemporalConnection, reason: str) -> InternalError:
    """The InternalError for a failed connection: what the SDK's ``reason`` means, and which setting to fix."""
    where = f"the Temporal server at {connection.address.value} (namespace {connection.namespace.value!r})"
    tls = connection.tls
    if "Unauthenticated" in reason or "PermissionDenied" in reason:
        if connection.api_key.value is None:
            return InternalError(
                f"{where} requires credentials and none were given: set TEMPORAL_API_KEY or "
                "STEPFLOW_TEMPORAL_API_KEY (or a client certificate for mTLS)"
            )
        return InternalError(
            f"{where} refused the API key from {connection.api_key.source}: check that it is valid, not expired, "
            "and allowed in this namespace"
        )
    if "NotValidForName" in reason:
        return InternalError(
            f"{where} presented a TLS certificate that is not valid for the name the client checked "
            f"({connection.server_name.value or connection.address.value.rpartition(':')[0]}, from "
            f"{connection.server_name.source if connection.server_name.is_set else connection.address.source}): "
            "set TEMPORAL_TLS_SERVER_NAME or STEPFLOW_TEMPORAL_TLS_SERVER_NAME to the name in the certificate"
        )
    if "InvalidCertificate" in reason or "UnknownIssuer" in reason:
        ca = connection.server_ca
        trusted = f"the CA in {ca.source}" if ca.is_set else f"the system's CAs (no CA set: {_SERVER_CA_VARIABLES})"
        return InternalError(
            f"{where} presented a TLS certificate not accepted by {trusted} (not signed by it, or expired): "
            "point the server CA setting at the CA that signed the server's certificate"
        )
    if "PrivateKeyParseError" in reason:
        return InternalError(f"the client key from {connection.client_key.source} is not a PEM private key")
    if "CertificateParseError" in reason or "InvalidCertificateData" in reason:
        return InternalError(f"the client certificate from {connection.client_cert.source} is not a PEM certificate")
    if "InconsistentKeys" in reason or "KeyMismatch" in reason:
        return InternalError(
            f"the client key from {connection.client_key.source} does not belong to the client certificate from "
            f"{connection.client_cert.source}: set both from the same key pair"
        )
    if tls.value and any(sign in reason for sign in _HANDSHAKE_CLOSED):
        given = (
            f"the client certificate from {connection.client_cert.source}"
            if connection.client_cert.is_set
            else "no client certificate (TEMPORAL_TLS_CLIENT_CERT_PATH / STEPFLOW_TEMPORAL_TLS_CLIENT_CERT_PATH)"
        )
        return InternalError(
            f"{where} closed the connection during the TLS handshake; it may require a client certificate "
            f"signed by a CA it trusts (mTLS), and this client sent {given}"
        )
    if not tls.value and ("transport error" in reason or "BrokenPipe" in reason or "connection closed" in reason):
        return InternalError(
            f"{where} closed the connection: it may expect TLS, which is off ({tls.source}); "
            "set TEMPORAL_TLS=true or STEPFLOW_TEMPORAL_TLS=true"
        )
    return InternalError(
        f"cannot reach {where} ({_short(reason)}). Start one with `stepflow server` (or `stepflow dev` for a "
        f"server and a worker), or point STEPFLOW_TEMPORAL_ADDRESS at a running one (the address came from "
        f"{connection.address.source})."
    )


def _short(reason: str) -> str:
    """The SDK's reason without its transport error chain (``Failed client connect: ... error: <what>``)."""
    if "ConnectionRefused" in reason:
        return "connection refused"
    if "dns error" in reason or "failed to lookup address" in reason:
        return "its host name does not resolve"
    text = reason.removeprefix("Failed client connect: ")
    for marker in ("ConnectError(", "error: "):
        if marker in text:
            text = text.rsplit(marker, 1)[-1]
    return text.strip(" ()}{")[:200] or reason[:200]


__all__ = ["connect", "connect_error"]
