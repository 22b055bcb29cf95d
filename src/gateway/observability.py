"""A gateway's traces and logs: the OpenTelemetry tracer provider from [gateway.tracing], and the
JSON log format (one event per line, with the active span's trace and span ids)."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

from gateway.config import TracingConfig

__all__ = ["JsonFormatter", "configure_logging", "tracer_provider"]


def tracer_provider(config: TracingConfig) -> TracerProvider:
    """The gateway's own provider (not the process-wide one): sampled by ratio unless the caller
    decided, exported over OTLP/gRPC in batches when an endpoint is set."""
    provider = TracerProvider(
        resource=Resource.create({"service.name": config.service_name}),
        sampler=ParentBased(TraceIdRatioBased(config.sample_ratio)),
    )
    if config.endpoint is not None:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=config.endpoint)))
    return provider


# Attributes every LogRecord has; anything else was passed in `extra=` and goes into the event.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (RFC 3339, UTC), level, logger, message, trace_id and span_id
    when a span is active, the exception's type (never its message: it may quote a request), and
    the fields given with `extra=`."""

    def format(self, record: logging.LogRecord) -> str:
        event: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        span = trace.get_current_span().get_span_context()
        if span.is_valid:
            event["trace_id"] = format(span.trace_id, "032x")
            event["span_id"] = format(span.span_id, "016x")
        if record.exc_info and record.exc_info[0] is not None:
            event["exception"] = record.exc_info[0].__name__
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in event:
                event[key] = value if isinstance(value, str | int | float | bool) or value is None else str(value)
        return json.dumps(event, ensure_ascii=False, separators=(",", ":"))


def configure_logging(level: int | str = logging.INFO, log_format: str = "text") -> None:
    """The process's root logger: `json` for production (one event a line), `text` to read."""
    handler = logging.StreamHandler()
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler], force=True)
