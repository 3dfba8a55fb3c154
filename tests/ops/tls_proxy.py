"""A stand-in for a production Temporal frontend: TLS (optionally mTLS) and an API key, in front of the dev server.

The dev server speaks plain gRPC and checks no credentials, so these tests put a small grpcio proxy in front of
it that terminates TLS with a certificate made by the test, checks the ``authorization`` metadata the way
Temporal Cloud does (``Bearer <key>``; UNAUTHENTICATED otherwise) and forwards each call's bytes unchanged,
trailing metadata included (Temporal's typed errors travel there). Temporal's frontend API is unary only, long
polls included, so one generic unary handler covers it.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

SERVER_NAME = "temporal.stepflow.test"
_DROPPED_METADATA = {"authorization", "user-agent", "te", "content-type"}


@dataclass(frozen=True)
class Pki:
    """PEM files of a throwaway certificate authority, a server certificate and a client certificate."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _certificate(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None,
    *,
    usage: x509.ObjectIdentifier | None = None,
    dns: str | None = None,
) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    issuer_name, signer = issuer if issuer is not None else (name, key)
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True)
    )
    if usage is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if dns is not None:  # the name only: connecting to 127.0.0.1 needs the server name setting
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(dns)]), critical=False)
    return builder.sign(signer, hashes.SHA256())


def make_pki(directory: Path, *, name: str = "stepflow test CA") -> Pki:
    """A CA, a server certificate for :data:`SERVER_NAME` and a client certificate, written under ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, server_key, client_key = _key(), _key(), _key()
    ca = _certificate(name, ca_key, None)
    issuer = (ca.subject, ca_key)
    server = _certificate(SERVER_NAME, server_key, issuer, usage=ExtendedKeyUsageOID.SERVER_AUTH, dns=SERVER_NAME)
    client = _certificate("stepflow-worker", client_key, issuer, usage=ExtendedKeyUsageOID.CLIENT_AUTH)
    files = {
        "ca.pem": ca.public_bytes(serialization.Encoding.PEM),
        "server.pem": server.public_bytes(serialization.Encoding.PEM),
        "server.key": _pem_key(server_key),
        "client.pem": client.public_bytes(serialization.Encoding.PEM),
        "client.key": _pem_key(client_key),
    }
    for file_name, data in files.items():
        (directory / file_name).write_bytes(data)
    return Pki(*(directory / file_name for file_name in files))


class _Forward(grpc.GenericRpcHandler):
    """Every method: check the API key, forward the request bytes upstream, return the reply bytes."""

    def __init__(self, channel: grpc.aio.Channel, api_key: str | None) -> None:
        self._channel = channel
        self._api_key = api_key
        self.calls = 0
        self.refused = 0

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler[bytes, bytes]:
        method: str = handler_call_details.method
        forward: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = self._channel.unary_unary(method)

        async def handle(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
            self.calls += 1
            metadata = list(context.invocation_metadata() or ())
            presented = dict(metadata).get("authorization")
            if self._api_key is not None and presented != f"Bearer {self._api_key}":
                self.refused += 1
                await context.abort(grpc.StatusCode.UNAUTHENTICATED, "Request unauthorized: invalid API key")
            passed = [(k, v) for k, v in metadata if k not in _DROPPED_METADATA and not k.startswith(("grpc-", ":"))]
            try:
                reply: bytes = await forward(request, metadata=passed, timeout=context.time_remaining())
            except grpc.aio.AioRpcError as error:
                await context.abort(error.code(), error.details() or "", error.trailing_metadata() or ())
            return reply

        return grpc.unary_unary_rpc_method_handler(handle)


class TlsProxy:
    """``async with TlsProxy(upstream, pki, api_key=...) as address``: a TLS frontend on 127.0.0.1."""

    def __init__(self, upstream: str, pki: Pki, *, api_key: str | None = None, client_auth: bool = False) -> None:
        self._upstream = upstream
        self._pki = pki
        self._api_key = api_key
        self._client_auth = client_auth
        self._channel: grpc.aio.Channel | None = None
        self._server: grpc.aio.Server | None = None
        self.handler: _Forward | None = None
        self.address = ""

    async def __aenter__(self) -> str:
        self._channel = grpc.aio.insecure_channel(self._upstream)
        self.handler = _Forward(self._channel, self._api_key)
        self._server = grpc.aio.server()
        self._server.add_generic_rpc_handlers([self.handler])
        credentials = grpc.ssl_server_credentials(
            [(self._pki.server_key.read_bytes(), self._pki.server_cert.read_bytes())],
            root_certificates=self._pki.ca.read_bytes() if self._client_auth else None,
            require_client_auth=self._client_auth,
        )
        port = self._server.add_secure_port("127.0.0.1:0", credentials)
        await self._server.start()
        self.address = f"127.0.0.1:{port}"
        return self.address

    async def __aexit__(self, *exc: object) -> None:
        if self._server is not None:
            await self._server.stop(grace=None)
        if self._channel is not None:
            await self._channel.close()
