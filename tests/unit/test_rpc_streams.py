"""A server-streaming call the client cancels ends quietly: no ERROR in the log (the trace
context of the call is not left attached across the stream's yields), and its span ends."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from c360_platform import rpc, telemetry

SERVICE = "c360.test.v1.Streams"
ENDLESS = f"/{SERVICE}/Endless"


def _endless(server: grpc.aio.Server) -> None:
    async def endless(request: bytes, context: Any) -> AsyncIterator[bytes]:
        n = 0
        while True:  # as fast as the client takes them: the server waits to send, not here
            n += 1
            yield str(n).encode().ljust(64 * 1024)

    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                SERVICE, {"Endless": grpc.unary_stream_rpc_method_handler(endless)}
            ),
        )
    )


async def test_a_stream_the_client_cancels_logs_no_error_and_ends_its_span(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(telemetry, "tracer", provider.get_tracer)
    caplog.set_level(logging.WARNING)
    host = rpc.ServiceHost("streams-probe", 0)
    host.add(SERVICE, _endless)
    port = await host.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            for _ in range(3):
                call = channel.unary_stream(ENDLESS, lambda b: b, lambda b: b)(b"")
                received: list[Any] = [await call.read() for _ in range(3)]
                assert [r.strip() for r in received] == [b"1", b"2", b"3"]
                call.cancel()
            for _ in range(100):  # the server sees the cancellations
                if len(exporter.get_finished_spans()) == 3:
                    break
                await asyncio.sleep(0.02)
    finally:
        await host.stop()
    assert [s.name for s in exporter.get_finished_spans()] == [ENDLESS] * 3
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


async def test_a_client_pinging_at_the_interval_a_service_admits_keeps_its_connection(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An idle channel with keepalive pings (every 10 s and more often) got GOAWAY
    "too_many_pings" at its third ping: gRPC's default admits one every 5 minutes."""
    monkeypatch.setattr(rpc, "MIN_CLIENT_PING_MS", 200)
    host = rpc.ServiceHost("keepalive-probe", 0)
    host.add(SERVICE, _endless)
    port = await host.start()
    options = [
        ("grpc.keepalive_time_ms", 300),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
    ]
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=options) as channel:
            await asyncio.wait_for(channel.channel_ready(), 5)
            for _ in range(12):  # 12 pings' time, idle: a GOAWAY leaves the channel IDLE
                await asyncio.sleep(0.3)
                assert channel.get_state() == grpc.ChannelConnectivity.READY
    finally:
        await host.stop()
