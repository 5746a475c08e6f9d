"""OpenTelemetry: spans per request and attempt (GenAI conventions), metrics, propagation."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fleet_support import MODEL, backend_toml

from intentmesh import ExecutionError, Gateway
from intentmesh.config import parse_config
from intentmesh.testing import FakeOpenAIProvider, Fault

pytest.importorskip("opentelemetry.sdk", reason="the otel extra is not installed")

from opentelemetry.sdk.metrics import MeterProvider  # noqa: E402
from opentelemetry.sdk.metrics.export import InMemoryMetricReader  # noqa: E402
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (  # noqa: E402
    InMemorySpanExporter,
)

from intentmesh.telemetry import Telemetry  # noqa: E402


class Otel:
    def __init__(self) -> None:
        self.spans = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])
        self.telemetry = Telemetry(self.tracer_provider, self.meter_provider)

    def finished(self) -> dict[str, Any]:
        return {s.name: s for s in self.spans.get_finished_spans()}

    def metrics(self) -> dict[str, Any]:
        data = self.reader.get_metrics_data()
        assert data is not None
        return {
            m.name: m
            for rm in data.resource_metrics
            for sm in rm.scope_metrics
            for m in sm.metrics
        }


@pytest.fixture
def otel() -> Iterator[Otel]:
    made = Otel()
    yield made
    made.tracer_provider.shutdown()
    made.meter_provider.shutdown()


def _config(*providers: tuple[str, FakeOpenAIProvider, float], extra: str = "") -> Any:
    text = "[receipts]\nenabled = false\n[routing]\nbackoff_s = 0\n" + extra
    for name, provider, price in providers:
        text += backend_toml(name, provider.base_url, price=price)
    return parse_config(text)


def test_request_and_attempt_spans_follow_genai_conventions(
    provider: FakeOpenAIProvider, otel: Otel
) -> None:
    with FakeOpenAIProvider(["fake-llama"]) as pricey:
        provider.fail_next(1, Fault.status(503))
        config = _config(("cheap", provider, 1.0), ("pricey", pricey, 2.0))
        with Gateway(config, telemetry=otel.telemetry) as gw:
            caller = otel.tracer_provider.get_tracer("app")
            with caller.start_as_current_span("handle-user-request") as outer:
                result = gw.infer(model=MODEL, prompt="hi", max_tokens=8, optimize="cost")
    spans = otel.finished()
    request = spans[f"chat {MODEL}"]
    assert request.parent is not None
    assert request.parent.span_id == outer.get_span_context().span_id
    assert request.context.trace_id == outer.get_span_context().trace_id
    attrs = dict(request.attributes or {})
    assert attrs["gen_ai.operation.name"] == "chat"
    assert attrs["gen_ai.request.model"] == MODEL
    assert attrs["gen_ai.response.model"] == "fake-llama"
    assert attrs["gen_ai.usage.input_tokens"] == result.usage.prompt_tokens
    assert attrs["gen_ai.usage.output_tokens"] == result.usage.completion_tokens
    assert attrs["intentmesh.backend"] == result.backend == "pricey"
    assert attrs["intentmesh.cost_usd"] == pytest.approx(result.cost_usd)
    assert attrs["intentmesh.verifiability"] == "receipt"
    failed, served = spans["attempt cheap"], spans["attempt pricey"]
    for span in (failed, served):
        assert span.parent is not None and span.parent.span_id == request.context.span_id
    assert dict(failed.attributes or {})["intentmesh.outcome"] == "error"
    assert dict(failed.attributes or {})["http.response.status_code"] == 503
    assert dict(served.attributes or {})["intentmesh.outcome"] == "ok"
    metrics = otel.metrics()
    assert {
        "gen_ai.client.token.usage",
        "gen_ai.client.operation.duration",
        "intentmesh.cost",
        "intentmesh.attempts",
        "intentmesh.attempt.duration",
    } <= set(metrics)
    outcomes = {
        dict(p.attributes)["intentmesh.outcome"]: p.value
        for p in metrics["intentmesh.attempts"].data.data_points
    }
    assert outcomes == {"error": 1, "ok": 1}


def test_a_failed_request_is_an_error_span(provider: FakeOpenAIProvider, otel: Otel) -> None:
    provider.always(Fault.status(503))
    with (
        Gateway(_config(("cheap", provider, 1.0)), telemetry=otel.telemetry) as gw,
        pytest.raises(ExecutionError),
    ):
        gw.infer(model=MODEL, prompt="hi", max_tokens=8)
    request = otel.finished()[f"chat {MODEL}"]
    assert request.status.status_code.name == "ERROR"
    assert dict(request.attributes or {})["error.type"] == "AllBackendsFailed"


def test_streams_get_a_request_span_with_the_receipt(
    provider: FakeOpenAIProvider, otel: Otel, tmp_path: Any
) -> None:
    text = f'[receipts]\nledger = "{tmp_path / "l.db"}"\nkey = "{tmp_path / "k.pem"}"\n'
    text += backend_toml("cheap", provider.base_url)
    with Gateway(parse_config(text), telemetry=otel.telemetry) as gw:
        stream = gw.stream(model=MODEL, prompt="hi", max_tokens=8)
        assert "".join(c.text for c in stream)
    result = stream.result
    assert result is not None and result.receipt_id
    attrs = dict(otel.finished()[f"chat {MODEL}"].attributes or {})
    assert attrs["gen_ai.usage.output_tokens"] == result.usage.completion_tokens
    assert attrs["intentmesh.receipt_id"] == result.receipt_id


def test_the_gateway_server_continues_the_callers_trace(
    provider: FakeOpenAIProvider, otel: Otel
) -> None:
    pytest.importorskip("starlette", reason="the server extra is not installed")
    from intentmesh.server import ThreadedServer, create_app

    trace_id, parent_id = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    with Gateway(_config(("cheap", provider, 1.0)), telemetry=otel.telemetry) as gw:
        server = ThreadedServer(create_app(gw)).start()
        try:
            body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}
            headers = {"traceparent": f"00-{trace_id}-{parent_id}-01"}
            url = server.url + "/v1/chat/completions"
            assert httpx.post(url, json=body, headers=headers, timeout=30).status_code == 200
        finally:
            server.stop()
    request = otel.finished()[f"chat {MODEL}"]
    assert format(request.context.trace_id, "032x") == trace_id
    assert request.parent is not None and format(request.parent.span_id, "016x") == parent_id


def test_otel_is_off_unless_configured(provider: FakeOpenAIProvider) -> None:
    with Gateway(_config(("cheap", provider, 1.0))) as gw:
        assert gw.telemetry is None
    with Gateway(_config(("cheap", provider, 1.0), extra="[otel]\nenabled = true\n")) as gw:
        assert isinstance(gw.telemetry, Telemetry)


def test_import_pulls_in_no_fleet_or_otel_dependency() -> None:
    code = (
        "import sys, intentmesh\n"
        "from intentmesh import Gateway\n"
        "import intentmesh._gateway, intentmesh.fleet, intentmesh.telemetry\n"
        "heavy = [m for m in sys.modules if m.split('.')[0] in "
        "('redis', 'psycopg', 'opentelemetry')]\n"
        "print(heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


class _Collector:
    """A loopback OTLP/HTTP collector: keeps the bodies posted to /v1/traces."""

    def __init__(self) -> None:
        import http.server
        import threading

        self.traces: list[bytes] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                if self.path == "/v1/traces":
                    outer.traces.append(body)
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def spans(self) -> list[Any]:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
        )

        out = []
        for body in list(self.traces):
            request = ExportTraceServiceRequest()
            request.ParseFromString(body)
            for rs in request.resource_spans:
                for ss in rs.scope_spans:
                    out.extend(ss.spans)
        return out

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_serve_exports_over_otlp_and_continues_the_callers_trace(
    provider: FakeOpenAIProvider, tmp_path: Any
) -> None:
    pytest.importorskip("opentelemetry.exporter.otlp.proto.http", reason="no OTLP exporter")
    import os

    from fleet_support import INTENTMESH, free_port, wait_for

    config = tmp_path / "intentmesh.toml"
    text = "[otel]\nenabled = true\n[receipts]\nenabled = false\n[server]\naccess_log = false\n"
    config.write_text(text + backend_toml("fake", provider.base_url))
    collector = _Collector()
    port = free_port()
    env = {
        **os.environ,
        "OTEL_EXPORTER_OTLP_ENDPOINT": collector.url,
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        "OTEL_METRIC_EXPORT_INTERVAL": "100000",
    }
    cmd = [INTENTMESH, "serve", "--config", str(config), "--port", str(port)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:

        def up() -> bool:
            assert proc.poll() is None, "intentmesh serve exited"
            try:
                return httpx.get(base + "/health", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(up, timeout_s=90, what="intentmesh serve")
        trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
        headers = {"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"}
        body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}
        response = httpx.post(base + "/v1/chat/completions", json=body, headers=headers, timeout=60)
        assert response.status_code == 200
        spans = wait_for(
            lambda: [s for s in collector.spans() if s.name == f"chat {MODEL}"],
            what="the request span at the collector",
        )
        assert spans[0].trace_id.hex() == trace_id
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        collector.close()
