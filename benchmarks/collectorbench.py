"""Collector throughput: spans per CPU-second through the benchmark collector's pipeline.

Client processes POST one pre-encoded OTLP/HTTP protobuf request (``--batch`` spans
shaped like the services' server spans, with business keys) in a loop for
``--duration`` seconds. The collector's accepted-span counter and its CPU time
(``/proc/<pid>/stat``) give spans per second per core; its VmRSS is sampled for the peak.

Prints one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))

from collector_stats import accepted


def _payload(batch: int) -> bytes:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
    from opentelemetry.proto.resource.v1.resource_pb2 import Resource
    from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

    def kv(key: str, value: object) -> KeyValue:
        if isinstance(value, int):
            return KeyValue(key=key, value=AnyValue(int_value=value))
        return KeyValue(key=key, value=AnyValue(string_value=str(value)))

    now = time.time_ns()
    spans = []
    for i in range(batch):
        attrs = {
            "http.request.method": "GET",
            "http.route": "/orders/{order_id}",
            "url.path": f"/orders/ORD-{i:08x}",
            "url.scheme": "http",
            "http.response.status_code": 200,
            "server.address": "127.0.0.1",
            "network.protocol.version": "1.1",
            "orderId": f"ORD-{i:08x}",
            "requestId": os.urandom(16).hex(),
        }
        spans.append(
            Span(
                trace_id=os.urandom(16),
                span_id=os.urandom(8),
                name="GET /orders/{order_id}",
                kind=Span.SPAN_KIND_SERVER,
                start_time_unix_nano=now,
                end_time_unix_nano=now + 1_000_000,
                attributes=[kv(k, v) for k, v in attrs.items()],
            )
        )
    request = ExportTraceServiceRequest(
        resource_spans=[
            ResourceSpans(
                resource=Resource(attributes=[kv("service.name", "bench-collector")]),
                scope_spans=[ScopeSpans(spans=spans)],
            )
        ]
    )
    return request.SerializeToString()


def _client(port: int, body: bytes, deadline: float) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {"Content-Type": "application/x-protobuf"}
    while time.monotonic() < deadline:
        conn.request("POST", "/v1/traces", body=body, headers=headers)
        conn.getresponse().read()


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--telemetry", required=True)
    parser.add_argument("--pid", type=int, required=True)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--clients", type=int, default=2)
    args = parser.parse_args()

    body = _payload(args.batch)
    before = accepted(args.telemetry, "spans")
    cpu_before = _cpu_seconds(args.pid)
    start = time.monotonic()
    deadline = start + args.duration
    procs = [
        multiprocessing.Process(target=_client, args=(args.port, body, deadline)) for _ in range(args.clients)
    ]
    for p in procs:
        p.start()
    peak = 0.0
    while any(p.is_alive() for p in procs):
        peak = max(peak, _rss_mb(args.pid))
        time.sleep(0.2)
    wall = time.monotonic() - start
    cpu = _cpu_seconds(args.pid) - cpu_before
    time.sleep(0.3)
    spans = accepted(args.telemetry, "spans") - before
    print(
        json.dumps(
            {
                "spans": spans,
                "spans_per_s": round(spans / wall),
                "collector_cpu_s": round(cpu, 2),
                "spans_per_cpu_s": round(spans / cpu) if cpu else None,
                "peak_rss_mb": round(peak, 1),
                "batch": args.batch,
            }
        )
    )


if __name__ == "__main__":
    main()
