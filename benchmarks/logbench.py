"""Log-path micro benchmark: loguru records exported through otel-correlate's pipeline.

Run by ``run.py`` in the project's venv with ``OTEL_EXPORTER_OTLP_ENDPOINT`` pointing
at the benchmark collector. Every record is logged inside a server-like span and a
``business_context``, so it carries trace id, span id, orderId and requestId; the
clock stops once the pipeline has flushed, and the collector's own counter says how
many records it accepted (records the SDK dropped do not count as exported).

Prints one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))

from collector_stats import accepted


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--telemetry", required=True, help="collector /metrics URL")
    args = parser.parse_args()

    os.environ.setdefault("OTEL_SERVICE_NAME", "bench-logs")
    os.environ["OTEL_CORRELATE_CONSOLE_LOG"] = "false"  # measure the export path, not stderr
    from loguru import logger
    from opentelemetry import trace

    from otel_correlate import business_context
    from otel_correlate._distro import DEFAULTS, configure_sdk

    for name, value in DEFAULTS.items():
        os.environ.setdefault(name, value)
    configure_sdk()
    logger.remove(0)  # loguru's default stderr sink: not part of the export path
    from otel_correlate._logs import instrument_loguru

    instrument_loguru(console=False)
    tracer = trace.get_tracer("bench.logs")
    provider = trace.get_tracer_provider()
    from opentelemetry._logs import get_logger_provider

    before = accepted(args.telemetry, "log_records")
    start = time.perf_counter()
    with tracer.start_as_current_span("GET /orders/{order_id}", kind=trace.SpanKind.SERVER):
        with business_context(orderId="ORD-1a2b3c4d", requestId="0123456789abcdef0123456789abcdef"):
            for i in range(args.records):
                logger.info("order {} looked up", i)
    logged = time.perf_counter() - start
    get_logger_provider().force_flush(60_000)  # type: ignore[attr-defined]
    elapsed = time.perf_counter() - start
    provider.force_flush(10_000)  # type: ignore[attr-defined]
    time.sleep(0.5)
    got = accepted(args.telemetry, "log_records") - before
    print(
        json.dumps(
            {
                "records": args.records,
                "accepted_by_collector": got,
                "dropped": args.records - got,
                "logged_per_s": round(args.records / logged),
                "exported_per_s": round(got / elapsed),
                "seconds": round(elapsed, 3),
            }
        )
    )


if __name__ == "__main__":
    main()
