"""The server profile (benchmarks/serverprofile.py): how samples become rows, and one real run of it."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
COLLECTOR = Path.home() / ".cache" / "otel-correlate" / "bin" / "otelcol-correlate"
SITE = "/srv/venv/lib/python3.11/site-packages"
STDLIB = "/usr/lib/python3.11"
OURS = "/work/instrumentation/otel_correlate"


def _profile_module() -> Any:
    spec = importlib.util.spec_from_file_location(
        "bench_serverprofile", ROOT / "benchmarks" / "serverprofile.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("frame", "row"),
    [
        (f"handle ({SITE}/fastapi/routing.py:380)", "fastapi"),
        (f"_run_once ({STDLIB}/asyncio/base_events.py:1922)", "asyncio (stdlib)"),
        (f"__exit__ ({STDLIB}/contextlib.py:146)", "contextlib (stdlib)"),
        ("join (<frozen posixpath>:88)", "posixpath (stdlib)"),
        (f"emit ({OURS}/_logs.py:147)", "otel_correlate"),
        (f"start_span ({SITE}/opentelemetry/sdk/trace/__init__.py:1100)", "opentelemetry"),
        ("get_order (/work/benchmarks/apps/fastapi_app.py:18)", "fastapi_app"),
        # Debian's packages; a checkout in a folder named like our package is not our package
        ("dispatch (/usr/lib/python3/dist-packages/flask/app.py:880)", "flask"),
        ("send (/home/otel_correlate/.venv/lib/python3.11/site-packages/h11/_connection.py:512)", "h11"),
        ("get_order (/home/otel_correlate/benchmarks/apps/fastapi_app.py:18)", "fastapi_app"),
        (f"emit ({SITE}/otel_correlate/_logs.py:147)", "otel_correlate"),
        ("<native>", "other"),
        ("\u00d9\u7185 (\u7f9d:3)", "other"),
    ],
)
def test_a_frame_is_charged_to_its_package_or_standard_library_module(frame: str, row: str) -> None:
    assert _profile_module().where(frame) == row


def test_samples_become_rows_per_package_and_per_function_of_ours_by_their_innermost_frame() -> None:
    raw = [
        # a request: our middleware calling the app, which logs through our sink
        f"thread (100): MainThread;__call__ ({OURS}/_asgi_server.py:227);handle ({SITE}/fastapi/routing.py:380);"
        f"write ({OURS}/_logs.py:283) 3",
        f"thread (100): MainThread;__call__ ({OURS}/_asgi_server.py:230);handle ({SITE}/fastapi/routing.py:381) 5",
        f"thread (100): MainThread;_run_once ({STDLIB}/asyncio/base_events.py:1922) 2",
        # a function's own time: only the innermost frame counts, at any line of it
        f"thread (100): MainThread;wrap ({OURS}/_traced.py:10);wrap ({OURS}/_traced.py:12) 1",
        f"thread (100): MainThread;wrap ({OURS}/_traced.py:14) 2",
        # the export thread: counted as such, never in the request rows
        f"thread (200): OtelBatchSpanRecordProcessor;export ({OURS}/_pipeline.py:112) 4",
        "not a sample line",
    ]
    assert _profile_module().aggregate(raw) == {
        "threads": {"request threads": 13, "export threads": 4},
        "packages": {"otel_correlate": 6, "fastapi": 5, "asyncio (stdlib)": 2},
        "ours": {"write (_logs.py)": 3, "wrap (_traced.py)": 3},
        "names": {100: "MainThread", 200: "OtelBatchSpanRecordProcessor"},
    }


@pytest.mark.parametrize(
    ("label", "thread"),
    [
        ("thread (28909): MainThread", (28909, "MainThread")),
        ("thread (28911): ThreadPoolExecutor-0_0", (28911, "ThreadPoolExecutor-0_0")),
        ("thread (28912): a name: with spaces", (28912, "a name: with spaces")),
        ("thread (0x7F3A12): OtelBatchSpanRecordProcessor", (None, "OtelBatchSpanRecordProcessor")),
        ("thread (28913)", (28913, "")),
    ],
)
def test_a_thread_label_gives_its_id_and_name(label: str, thread: tuple[int | None, str]) -> None:
    assert _profile_module().thread_of(label) == thread


def test_rounds_pool_their_samples_and_each_row_is_a_share_of_the_request_threads_user_cpu() -> None:
    def sampled(requests: int, rps: float, user_us: float, ours: int, other: int) -> dict[str, Any]:
        return {
            "requests": requests,
            "rps": rps,
            "request_threads_user_us": user_us,
            "request_threads_system_us": requests * 50.0,
            "export_threads_cpu_us": requests * 10.0,
            "threads": {"request threads": ours + other, "export threads": 7},
            "packages": {"otel_correlate": ours, "fastapi": other},
            "ours": {"emit (_logs.py)": ours},
        }

    # 3,000 requests: 750,000 µs of user CPU (250 per request) over 900 request-thread samples
    rounds = [
        sampled(1000, 100.0, 250_000.0, 100, 200),
        sampled(1000, 400.0, 250_000.0, 100, 200),
        sampled(1000, 130.0, 250_000.0, 100, 200),
    ]
    assert _profile_module().combine(rounds) == {
        "rounds": 3,
        "requests": 3000,
        "rps": 130,  # the median round, not the mean (210)
        "cpu_us_per_request": 310.0,
        "request_threads_user_us": 250.0,
        "request_threads_system_us": 50.0,
        "export_threads_cpu_us": 10.0,
        "samples": {"request threads": 900, "export threads": 21},
        "packages_us_per_request": {"otel_correlate": 83.3, "fastapi": 166.7},
        "ours_us_per_request": {"emit (_logs.py)": 83.3},
    }


@pytest.mark.e2e
@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed (./run setup installs it)")
@pytest.mark.skipif(not COLLECTOR.exists(), reason="the collector is not built (./run setup builds it)")
def test_a_short_profile_of_the_real_servers_reports_every_row(tmp_path: Path) -> None:
    """Shape only: both configurations profiled under load; no timing is asserted."""
    command = [
        sys.executable,
        str(ROOT / "benchmarks" / "serverprofile.py"),
        "--rounds",
        "1",
        "--duration",
        "3",
    ]
    done = subprocess.run(
        [*command, "--port-base", "25200", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((tmp_path / "profile-fastapi.json").read_text())
    assert list(result) == ["uninstrumented", "otel-correlate"]
    plain, ours = result["uninstrumented"], result["otel-correlate"]
    for row in (plain, ours):
        assert row["rounds"] == 1 and row["requests"] > 0 and row["request_threads_user_us"] > 0
        assert row["samples"]["request threads"] > 0
        assert "uvicorn" in row["packages_us_per_request"]
    # only the instrumented server has export threads, and runs our package's code
    assert plain["export_threads_cpu_us"] == 0 and "export threads" not in plain["samples"]
    assert "otel_correlate" not in plain["packages_us_per_request"]
    assert ours["packages_us_per_request"]["otel_correlate"] > 0
    # py-spy's thread ids matched /proc's: the export threads' CPU is told apart from the requests'
    assert ours["export_threads_cpu_us"] > 0 and ours["samples"]["export threads"] > 0
    assert any(name.startswith("ServerTelemetryMiddleware.") for name in ours["ours_us_per_request"])
    for config in result:
        assert (tmp_path / "profiles" / f"fastapi-{config}-1.txt").stat().st_size > 0
    table = (tmp_path / "profile-fastapi.md").read_text()
    assert table.startswith("| fastapi, µs per request | uninstrumented | otel-correlate | difference |")
    assert "| in otel_correlate |" in table
