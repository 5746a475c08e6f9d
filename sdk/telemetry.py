"""OpenTelemetry traces and metrics, with the GenAI semantic conventions (extra ``otel``).

Off unless ``[otel] enabled = true`` or ``Gateway(telemetry=Telemetry(...))``; when off the
gateway holds ``None`` and pays one ``is None`` check per request. When on, each request is a
span ``chat {model}`` (kind CLIENT) whose parent is the caller's current span (or, behind
``intentmesh serve``, the incoming ``traceparent``), with one child span per attempt
(``attempt {backend}``, placed at its recorded start and latency). Metrics:

==================================== ========= =================================================
``gen_ai.client.token.usage``        histogram tokens, by ``gen_ai.token.type`` (input/output)
``gen_ai.client.operation.duration`` histogram seconds per request
``intentmesh.cost``                  counter   USD spent, by backend and network
``intentmesh.attempts``              counter   attempts, by backend and ``intentmesh.outcome``
``intentmesh.attempt.duration``      histogram seconds per attempt
==================================== ========= =================================================

Providers default to the global ones (set up by your app or ``opentelemetry-instrument``);
tests pass an SDK ``TracerProvider``/``MeterProvider`` with in-memory readers.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from intentmesh.errors import ConfigurationError

if TYPE_CHECKING:
    from intentmesh._intent import Intent
    from intentmesh._result import InferenceResult
    from intentmesh.router import Attempt

__all__ = ["RequestSpan", "Telemetry", "configure_otlp"]

_SCOPE = "intentmesh"


def _otel() -> tuple[Any, Any, Any]:
    try:
        from opentelemetry import context, metrics, trace
    except ImportError:
        raise ConfigurationError(
            "[otel] enabled needs OpenTelemetry: pip install 'intentmesh[otel]'"
        ) from None
    return context, metrics, trace


def configure_otlp() -> bool:
    """Set up global OpenTelemetry SDK providers exporting OTLP/HTTP, unless the process already
    has an SDK provider (``opentelemetry-instrument``, your app). ``intentmesh serve`` calls it
    when ``[otel] enabled``. The standard variables apply: ``OTEL_EXPORTER_OTLP_ENDPOINT``
    (default ``http://localhost:4318``), ``OTEL_SERVICE_NAME`` (default ``intentmesh``),
    ``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_BSP_SCHEDULE_DELAY``, ``OTEL_METRIC_EXPORT_INTERVAL``.
    Returns whether it installed the providers.
    """
    _, metrics, trace = _otel()
    try:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        raise ConfigurationError(
            "[otel] enabled under intentmesh serve needs the OTLP exporter: "
            "pip install 'intentmesh[otel]'"
        ) from None
    if isinstance(trace.get_tracer_provider(), TracerProvider):
        return False
    named = {} if os.environ.get("OTEL_SERVICE_NAME") else {"service.name": "intentmesh"}
    resource = Resource.create(named)
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(tracer_provider)
    reader = PeriodicExportingMetricReader(OTLPMetricExporter())
    metrics.set_meter_provider(MeterProvider(resource=resource, metric_readers=[reader]))
    return True


class Telemetry:
    """Creates request and attempt spans and records metrics; one per gateway."""

    def __init__(self, tracer_provider: Any = None, meter_provider: Any = None) -> None:
        self._context, metrics, self._trace = _otel()
        from intentmesh import __version__

        self.tracer = self._trace.get_tracer(_SCOPE, __version__, tracer_provider=tracer_provider)
        meter = metrics.get_meter(_SCOPE, __version__, meter_provider=meter_provider)
        self.tokens = meter.create_histogram(
            "gen_ai.client.token.usage", unit="{token}", description="tokens per request"
        )
        self.duration = meter.create_histogram(
            "gen_ai.client.operation.duration", unit="s", description="request duration"
        )
        self.cost = meter.create_counter("intentmesh.cost", unit="USD", description="USD spent")
        self.attempts = meter.create_counter(
            "intentmesh.attempts", unit="{attempt}", description="attempts by outcome"
        )
        self.attempt_duration = meter.create_histogram(
            "intentmesh.attempt.duration", unit="s", description="attempt duration"
        )

    def start(self, intent: Intent, operation: str = "chat") -> RequestSpan:
        """A request span, child of the current context's span (not made current)."""
        model = intent.models[0] if intent.models else ""
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": operation,
            "gen_ai.request.model": model,
            "intentmesh.verifiability": intent.verifiability,
            "intentmesh.optimize": intent.optimize,
        }
        for name, value in (
            ("gen_ai.request.max_tokens", intent.max_tokens),
            ("gen_ai.request.temperature", intent.temperature),
            ("gen_ai.request.top_p", intent.top_p),
            ("gen_ai.request.seed", intent.seed),
            ("intentmesh.max_price_usd", intent.max_price_usd),
        ):
            if value is not None:
                attributes[name] = value
        span = self.tracer.start_span(
            f"{operation} {model}", kind=self._trace.SpanKind.CLIENT, attributes=attributes
        )
        return RequestSpan(self, span, operation, model)

    @contextlib.contextmanager
    def incoming(self, headers: Mapping[str, str]) -> Iterator[None]:
        """Make the caller's ``traceparent``/``tracestate`` the current context (the server)."""
        from opentelemetry.propagate import extract

        token = self._context.attach(extract(dict(headers)))
        try:
            yield
        finally:
            self._context.detach(token)


class RequestSpan:
    """One request's span; :meth:`finish` or :meth:`fail` ends it (and records metrics)."""

    def __init__(self, telemetry: Telemetry, span: Any, operation: str, model: str) -> None:
        self.t = telemetry
        self.span = span
        self.base = {"gen_ai.operation.name": operation, "gen_ai.request.model": model}
        self.start_ns = time.time_ns()
        self.started = time.perf_counter()

    def finish(self, result: InferenceResult) -> None:
        usage = result.usage
        self.span.set_attributes(
            {
                "gen_ai.response.model": result.provider_model,
                "gen_ai.provider.name": result.network,
                "gen_ai.usage.input_tokens": usage.prompt_tokens,
                "gen_ai.usage.output_tokens": usage.completion_tokens,
                "intentmesh.backend": result.backend,
                "intentmesh.network": result.network,
                "intentmesh.model": result.model,
                "intentmesh.cost_usd": result.cost_usd,
                "intentmesh.cached": result.cached,
                "intentmesh.attempts": len(result.attempts),
            }
        )
        if result.finish_reason:
            self.span.set_attribute("gen_ai.response.finish_reasons", [result.finish_reason])
        if result.receipt_id:
            self.span.set_attribute("intentmesh.receipt_id", result.receipt_id)
        self._attempts(result.attempts)
        where = {**self.base, "gen_ai.response.model": result.provider_model}
        where["intentmesh.backend"] = result.backend
        self.t.tokens.record(usage.prompt_tokens, {**where, "gen_ai.token.type": "input"})
        self.t.tokens.record(usage.completion_tokens, {**where, "gen_ai.token.type": "output"})
        money = {"intentmesh.backend": result.backend, "intentmesh.network": result.network}
        self.t.cost.add(result.cost_usd, money)
        self._end(where)

    def fail(self, exc: BaseException) -> None:
        attempts = getattr(exc, "attempts", ())
        self._attempts(attempts)
        self.span.set_attribute("error.type", type(exc).__name__)
        self.span.set_status(self.t._trace.Status(self.t._trace.StatusCode.ERROR, str(exc)[:500]))
        if isinstance(exc, Exception):
            self.span.record_exception(exc)
        self.t.cost.add(sum(a.cost_usd for a in attempts), {})
        self._end({**self.base, "error.type": type(exc).__name__})

    def _end(self, where: dict[str, Any]) -> None:
        self.t.duration.record(time.perf_counter() - self.started, where)
        self.span.end()

    def _attempts(self, attempts: Any) -> None:
        parent = self.t._trace.set_span_in_context(self.span)
        for a in attempts:
            self._attempt(a, parent)

    def _attempt(self, a: Attempt, parent: Any) -> None:
        start = self.start_ns + int(a.started_ms * 1e6)
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": self.base["gen_ai.operation.name"],
            "gen_ai.request.model": a.model,
            "gen_ai.response.model": a.provider_model,
            "intentmesh.backend": a.backend,
            "intentmesh.network": a.network,
            "intentmesh.outcome": a.outcome,
            "intentmesh.cost_usd": a.cost_usd,
            "intentmesh.retry": a.retry,
            "intentmesh.hedge": a.hedge,
        }
        if a.error_kind:
            attributes["error.type"] = a.error_kind
        if a.status_code is not None:
            attributes["http.response.status_code"] = a.status_code
        span = self.t.tracer.start_span(
            f"attempt {a.backend}",
            context=parent,
            kind=self.t._trace.SpanKind.CLIENT,
            attributes=attributes,
            start_time=start,
        )
        if a.outcome == "error":
            span.set_status(self.t._trace.Status(self.t._trace.StatusCode.ERROR, a.error or ""))
        span.end(end_time=start + int(a.latency_ms * 1e6))
        where = {"intentmesh.backend": a.backend, "intentmesh.outcome": a.outcome}
        self.t.attempts.add(1, where)
        if a.outcome != "skipped":
            self.t.attempt_duration.record(a.latency_ms / 1000, where)
