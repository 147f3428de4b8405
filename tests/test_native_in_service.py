"""Under opentelemetry-instrument with the defaults, a request's hot paths really run in C.

The unit tests prove each C function against its Python definition; this one proves
the service's real configuration reaches them. A setting, SDK or framework change that
made them decline on every request would keep every output right and quietly cost
the service what the C code saves, so each path's answers are counted in a real
instrumented process, for FastAPI and for Flask.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

_SCRIPT = r"""
import collections, io, json, os, sys
from otel_correlate import _asgi_server, _fastlogs, _fastsdk, _logs

counts = collections.Counter()

def count(name, module, attribute, declined):
    real = getattr(module, attribute)
    if real is None:
        counts[name + ":missing"] += 1
        return
    def counted(*args):
        answer = real(*args)
        counts[name + (":declined" if answer is declined else ":c")] += 1
        return answer
    setattr(module, attribute, counted)

def count_python(name, owner, attribute):
    real = getattr(owner, attribute)
    def counted(*args, **kwargs):
        counts[name + ":python"] += 1
        return real(*args, **kwargs)
    setattr(owner, attribute, counted)

count("end", _fastsdk, "_NATIVE_END", False)
count("log", _fastlogs, "_NATIVE_EMIT", False)
count("loguru", _logs, "_NATIVE_LOGURU", False)
count("record", _fastsdk, "_NATIVE_RECORD", False)
count("request", _asgi_server, "_NATIVE_REQUEST", False)
# The C request start calls the C span start and attributes itself (it declines when either global is
# replaced, so they are not wrapped); what a decline of theirs would reach is counted instead.
count_python("start", _fastsdk._FastTracer, "start_span")
count_python("attributes", _asgi_server, "request_attributes")

from loguru import logger
from opentelemetry import metrics

lookups = metrics.get_meter("orders").create_counter("orders.lookups")
REQUESTS = 20

if sys.argv[1] == "fastapi":
    from fastapi.testclient import TestClient
    from fastapi import FastAPI
    app = FastAPI()

    @app.get("/orders/{order_id}")
    def get_order(order_id: str) -> dict:
        logger.info("order {} looked up", order_id)
        lookups.add(1, {"result": "hit"})
        return {"id": order_id}

    client = TestClient(app)
else:
    from flask import Flask
    app = Flask("orders")

    @app.get("/orders/<order_id>")
    def get_order(order_id: str) -> dict:
        logger.info("order {} looked up", order_id)
        lookups.add(1, {"result": "hit"})
        return {"id": order_id}

    client = app.test_client()
for n in range(REQUESTS):
    assert client.get(f"/orders/ORD-{n}").status_code == 200
print(json.dumps(counts), flush=True)
os._exit(0)  # no exporter shutdown: the collector address is closed on purpose
"""


@pytest.mark.parametrize("framework", ["fastapi", "flask"])
def test_a_services_requests_take_the_c_paths(framework: str) -> None:
    instrument = str(Path(sys.executable).with_name("opentelemetry-instrument"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.update(
        OTEL_SERVICE_NAME="native-check",
        OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:9",  # nothing listens; nothing is exported in time anyway
        OTEL_BSP_SCHEDULE_DELAY="600000",
        OTEL_BLRP_SCHEDULE_DELAY="600000",
        OTEL_METRIC_EXPORT_INTERVAL="600000",
    )
    done = subprocess.run(
        [instrument, sys.executable, "-c", _SCRIPT, framework],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    counts = json.loads(done.stdout.strip().splitlines()[-1])
    # every request: its start (state, attributes, span; the first loads the instruments in Python, whose
    # steps then call the C attributes and span start), its span's end, its log line, its two measurements
    # (the counter and the duration histogram; the first of each series goes through Python once); the
    # first log line makes its logger and converts loguru's clock start in Python, then hands off in C.
    # Neither the Python tracer nor the Python attributes are reached.
    assert {k: v for k, v in counts.items() if not k.startswith("record")} == {
        "request:c": 19,
        "request:declined": 1,
        "end:c": 20,
        "loguru:c": 19,
        "loguru:declined": 1,
        "log:c": 1,
    }, counts
    assert counts["record:c"] >= 2 * 20 - 2 and counts.get("record:declined", 0) <= 2, counts
