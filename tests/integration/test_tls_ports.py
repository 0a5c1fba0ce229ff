"""A service as the cluster runs it: mutual TLS on its gRPC port with a certificate naming its
Service (`c360 ops secrets`), and a plain port with health only for the kubelet's probes."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from c360_platform import certificates, rpc


def _write(folder: Path, name: str, pem: bytes) -> Path:
    path = folder / name
    path.write_bytes(pem)
    return path


async def _check(channel: grpc.aio.Channel) -> int:
    reply = await health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(), timeout=5
    )
    return int(reply.status)


async def _services(channel: grpc.aio.Channel) -> list[str]:
    """What reflection says the server serves."""
    stream = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5
    )
    return [s.name async for reply in stream for s in reply.list_services_response.service]


async def test_the_health_port_answers_probes_and_nothing_else_while_grpc_needs_a_certificate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    authority = certificates.Authority.create()
    ca = _write(tmp_path, "ca.crt", authority.cert_pem)
    cert, key = authority.issue("c360 customer", certificates.service_names("customer", "crm"))
    monkeypatch.setenv("C360_TLS_CA", str(ca))
    monkeypatch.setenv("C360_TLS_CERT", str(_write(tmp_path, "tls.crt", cert)))
    monkeypatch.setenv("C360_TLS_KEY", str(_write(tmp_path, "tls.key", key)))
    operator_cert, operator_key = authority.issue("c360 operator")
    stranger = certificates.Authority.create("another authority")
    stranger_cert, stranger_key = stranger.issue("c360 operator")

    host = rpc.ServiceHost("customer", 0, health_port=0)
    port = await host.start()
    health = f"127.0.0.1:{host.health_bound_port}"
    address = f"127.0.0.1:{port}"
    try:
        # The probe's view: plain text, no certificate, health answers.
        async with grpc.aio.insecure_channel(health) as channel:
            assert await _check(channel) == health_pb2.HealthCheckResponse.SERVING
            # ... and nothing else is served there: not even reflection.
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await _services(channel)
            assert refused.value.code() == grpc.StatusCode.UNIMPLEMENTED

        def mutual(cert_pem: bytes, key_pem: bytes, name: str) -> grpc.aio.Channel:
            credentials = grpc.ssl_channel_credentials(authority.cert_pem, key_pem, cert_pem)
            return grpc.aio.secure_channel(
                address, credentials, options=[("grpc.ssl_target_name_override", name)]
            )

        # The gRPC port: refused in plain text and to a certificate of another authority.
        async with grpc.aio.insecure_channel(address) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await _check(channel)
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        async with mutual(stranger_cert, stranger_key, "customer.crm.svc") as channel:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await _check(channel)
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        # The operator's certificate reaches the Service by its cluster names, and the client
        # refuses the server under a name its certificate does not carry.
        for name in ("customer", "customer.crm.svc.cluster.local"):
            async with mutual(operator_cert, operator_key, name) as channel:
                assert await _check(channel) == health_pb2.HealthCheckResponse.SERVING
        async with mutual(operator_cert, operator_key, "sales.crm.svc") as channel:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await _check(channel)
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        await host.stop()
    async with grpc.aio.insecure_channel(health) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as gone:
            await _check(channel)
        assert gone.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_a_callers_certificate_cannot_serve_so_an_integrator_cannot_pose_as_a_service(
    tmp_path: Path,
) -> None:
    """`c360 up` hands integration.crt to integrators: a server showing it (on a port of a
    service that is restarting, say) must not be trusted, or it would collect the tokens of
    the CLI and the services that connect; the services' certificate is."""
    issued = certificates.local_authority(tmp_path / "tls")
    ca = issued["service"].ca.read_bytes()
    operator = issued["operator"]
    for identity, trusted in (("service", True), ("integration", False), ("operator", False)):
        files = issued[identity]
        server = grpc.aio.server()
        health = rpc.Health()
        await health.set("", health_pb2.HealthCheckResponse.SERVING)
        health_pb2_grpc.add_HealthServicer_to_server(health, server)
        credentials = grpc.ssl_server_credentials(
            [(files.key.read_bytes(), files.cert.read_bytes())], root_certificates=ca
        )
        port = server.add_secure_port("127.0.0.1:0", credentials)
        await server.start()
        try:
            client = grpc.ssl_channel_credentials(
                ca, operator.key.read_bytes(), operator.cert.read_bytes()
            )
            async with grpc.aio.secure_channel(f"127.0.0.1:{port}", client) as channel:
                if trusted:
                    assert await _check(channel) == health_pb2.HealthCheckResponse.SERVING
                else:
                    with pytest.raises(grpc.aio.AioRpcError) as refused:
                        await _check(channel)
                    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE, identity
        finally:
            await server.stop(None)
