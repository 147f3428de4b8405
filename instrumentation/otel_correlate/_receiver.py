"""A small OTLP/HTTP receiver that decodes what services send, for tests and the demo.

It listens on 127.0.0.1, accepts ``POST /v1/traces``, ``/v1/metrics`` and
``/v1/logs`` in protobuf (gzip or not), decodes them with the official proto
definitions (``opentelemetry-proto``) and keeps flat records to assert on. It is
not a collector: the real stack uses our collector build.

Example:
    >>> with OTLPReceiver() as receiver:  # doctest: +SKIP
    ...     print(receiver.endpoint)
    http://127.0.0.1:43123
"""

from __future__ import annotations

import gzip
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def _proto() -> Any:
    try:
        from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
        from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "the OTLP receiver needs opentelemetry-proto: pip install 'otel-correlate[dev]'"
        ) from exc
    return trace_service_pb2, metrics_service_pb2, logs_service_pb2


def _value(any_value: Any) -> Any:
    kind = any_value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [_value(v) for v in any_value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _value(kv.value) for kv in any_value.kvlist_value.values}
    return getattr(any_value, kind)


def _attributes(key_values: Any) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in key_values}


@dataclass(frozen=True)
class SpanRecord:
    """One received span."""

    trace_id: str
    span_id: str
    parent_span_id: str
    name: str
    kind: int
    service: str
    attributes: dict[str, Any]
    resource: dict[str, Any]
    status_code: int
    start_time_ns: int = 0


@dataclass(frozen=True)
class LogRecordData:
    """One received log record."""

    body: Any
    severity_text: str
    severity_number: int
    trace_id: str
    span_id: str
    service: str
    attributes: dict[str, Any]
    resource: dict[str, Any]


@dataclass(frozen=True)
class MetricPointData:
    """One received metric data point."""

    name: str
    unit: str
    service: str
    attributes: dict[str, Any]
    resource: dict[str, Any]
    exemplars: tuple[dict[str, Any], ...]
    value: float = 0.0
    count: int | None = None


class OTLPReceiver:
    """OTLP/HTTP protobuf receiver on 127.0.0.1 that keeps decoded records.

    Args:
        port: TCP port; 0 picks a free one.
        fail: When true, answer every export with 503 (to test exporter failures).
    """

    def __init__(self, *, port: int = 0, fail: bool = False) -> None:
        self.spans: list[SpanRecord] = []
        self.logs: list[LogRecordData] = []
        self.metrics: list[MetricPointData] = []
        self.requests = 0
        self.fail = fail
        self._lock = threading.Lock()
        receiver = self
        trace_pb2, metrics_pb2, logs_pb2 = _proto()
        parsers = {
            "/v1/traces": (trace_pb2.ExportTraceServiceRequest, receiver._add_traces),
            "/v1/metrics": (metrics_pb2.ExportMetricsServiceRequest, receiver._add_metrics),
            "/v1/logs": (logs_pb2.ExportLogsServiceRequest, receiver._add_logs),
        }
        responses = {
            "/v1/traces": trace_pb2.ExportTraceServiceResponse().SerializeToString(),
            "/v1/metrics": metrics_pb2.ExportMetricsServiceResponse().SerializeToString(),
            "/v1/logs": logs_pb2.ExportLogsServiceResponse().SerializeToString(),
        }

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                receiver.requests += 1
                parser = parsers.get(self.path)
                if parser is None:
                    self.send_error(404, "unknown OTLP path")
                    return
                if receiver.fail:
                    self.send_error(503, "receiver told to fail")
                    return
                encoding = self.headers.get("Content-Encoding", "")
                if encoding == "gzip":
                    body = gzip.decompress(body)
                elif encoding == "deflate":
                    body = zlib.decompress(body)
                message = parser[0]()
                message.ParseFromString(body)
                parser[1](message)
                payload = responses[self.path]
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="otlp-receiver", daemon=True)

    @property
    def endpoint(self) -> str:
        """Base URL to put in ``OTEL_EXPORTER_OTLP_ENDPOINT``."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> OTLPReceiver:
        """Start serving in a background thread."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> OTLPReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _add_traces(self, request: Any) -> None:
        with self._lock:
            for resource_spans in request.resource_spans:
                resource = _attributes(resource_spans.resource.attributes)
                service = str(resource.get("service.name", ""))
                for scope_spans in resource_spans.scope_spans:
                    for span in scope_spans.spans:
                        self.spans.append(
                            SpanRecord(
                                trace_id=span.trace_id.hex(),
                                span_id=span.span_id.hex(),
                                parent_span_id=span.parent_span_id.hex(),
                                name=span.name,
                                kind=span.kind,
                                service=service,
                                attributes=_attributes(span.attributes),
                                resource=resource,
                                status_code=span.status.code,
                                start_time_ns=span.start_time_unix_nano,
                            )
                        )

    def _add_logs(self, request: Any) -> None:
        with self._lock:
            for resource_logs in request.resource_logs:
                resource = _attributes(resource_logs.resource.attributes)
                service = str(resource.get("service.name", ""))
                for scope_logs in resource_logs.scope_logs:
                    for record in scope_logs.log_records:
                        self.logs.append(
                            LogRecordData(
                                body=_value(record.body),
                                severity_text=record.severity_text,
                                severity_number=record.severity_number,
                                trace_id=record.trace_id.hex(),
                                span_id=record.span_id.hex(),
                                service=service,
                                attributes=_attributes(record.attributes),
                                resource=resource,
                            )
                        )

    def _add_metrics(self, request: Any) -> None:
        with self._lock:
            for resource_metrics in request.resource_metrics:
                resource = _attributes(resource_metrics.resource.attributes)
                service = str(resource.get("service.name", ""))
                for scope_metrics in resource_metrics.scope_metrics:
                    for metric in scope_metrics.metrics:
                        for point in _points(metric):
                            self.metrics.append(
                                MetricPointData(
                                    name=metric.name,
                                    unit=metric.unit,
                                    service=service,
                                    attributes=_attributes(point.attributes),
                                    resource=resource,
                                    exemplars=tuple(
                                        {
                                            "trace_id": e.trace_id.hex(),
                                            "filtered_attributes": _attributes(e.filtered_attributes),
                                        }
                                        for e in point.exemplars
                                    ),
                                    value=_point_value(point),
                                    count=point.count if hasattr(point, "count") else None,
                                )
                            )

    def traces(self) -> dict[str, list[SpanRecord]]:
        """Received spans grouped by trace id."""
        grouped: dict[str, list[SpanRecord]] = {}
        with self._lock:
            for span in self.spans:
                grouped.setdefault(span.trace_id, []).append(span)
        return grouped


def _point_value(point: Any) -> float:
    if hasattr(point, "sum"):
        return float(point.sum)
    kind = point.WhichOneof("value")
    return float(getattr(point, kind)) if kind else 0.0


def _points(metric: Any) -> Iterator[Any]:
    kind = metric.WhichOneof("data")
    if kind is None:
        return iter(())
    return iter(getattr(metric, kind).data_points)
