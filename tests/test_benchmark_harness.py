"""The overhead benchmark harness runs end to end and writes results of the documented shape.

A smoke run only: a second of load per configuration, no peers, and no timing
assertions (the numbers belong to benchmarks/results, not to a test).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
COLLECTOR = Path.home() / ".cache" / "otel-correlate" / "bin" / "otelcol-correlate"

pytestmark = pytest.mark.e2e


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed (./run setup installs it)")
@pytest.mark.skipif(not COLLECTOR.exists(), reason="the collector is not built (./run setup builds it)")
def test_quick_benchmark_writes_a_table_and_json_for_every_configuration(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "run.py"),
            "--quick",
            "--duration",
            "1",
            "--configs",
            "uninstrumented,otel-correlate,otel-correlate-sampled",
            "--port-base",
            "25000",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((tmp_path / "latest.json").read_text())
    assert set(result) == {"meta", "summary", "runs", "once", "collector_down", "logbench", "collector"}
    configs = ["uninstrumented", "otel-correlate", "otel-correlate-sampled"]
    assert result["meta"]["configs"] == configs
    for framework in ("fastapi", "flask"):
        rows = result["summary"][framework]
        assert set(rows) == set(configs)
        ours = rows["otel-correlate"]
        for key in (
            "rps",
            "throughput_ratio",
            "added_p50_ms",
            "added_p99_ms",
            "added_lowload_p50_us",
            "added_lowload_cpu_us",
            "pss_mb",
        ):
            assert isinstance(ours[key], float), (framework, key, ours)
        assert ours["errors"] == 0
        # One server span and one log record per request, never duplicated (the exact share exported
        # under load is a measurement, reported in the table, not asserted here).
        assert 0.5 < ours["spans_per_request"] < 1.1  # wrk leaves up to c requests uncounted
        assert 0.5 < ours["logs_per_request"] < 1.1
        assert rows["uninstrumented"]["spans_per_request"] == 0
        # The documented sampling option (10 % of traces): fewer spans, every log record still exported.
        assert 0 < rows["otel-correlate-sampled"]["spans_per_request"] < 0.4
        assert 0.5 < rows["otel-correlate-sampled"]["logs_per_request"] < 1.1
        # Low load: both servers at once, taking turns; every request of the phase answered and timed.
        once = result["once"][framework]
        # (uninstrumented's own numbers pool its pairs, one with each other configuration)
        each = result["meta"]["lowload_requests"]
        assert {c: r["lowload_requests"] for c, r in once.items()} == {
            **dict.fromkeys(configs, each),
            "uninstrumented": each * (len(configs) - 1),
        }
        assert all(0 < r["lowload_p50_ms"] <= r["lowload_p99_ms"] for r in once.values()), once
        assert all(r["lowload_cpu_us_per_request"] > 0 for r in once.values()), once
        # the added p50 is the median of the slices' paired differences, inside their range
        assert result["meta"]["lowload_slices"] == 5
        low = once["otel-correlate"]
        assert (
            low["added_lowload_p50_us_min"] <= low["added_lowload_p50_us"] <= low["added_lowload_p50_us_max"]
        ), low
        assert ours["added_lowload_p50_us"] == low["added_lowload_p50_us"]
        # Under load, the configurations took turns: one slice each per round.
        assert {c: len(r) for c, r in result["runs"][framework].items()} == dict.fromkeys(
            configs, result["meta"]["rounds"]
        )
    # With the collector down: the server's memory once started and after each of the quick run's two loads.
    for framework in ("fastapi", "flask"):
        points = result["collector_down"][framework]
        assert len(points) == 3, points
        served = [p["requests"] for p in points]
        assert served[0] == 1 and served[0] < served[1] < served[2], points  # it kept answering
        assert all(p["pss_mb"] > 10 for p in points), points
    # The log path: one run per round for each otel-correlate configuration, the median with its range.
    assert set(result["logbench"]) == {"otel-correlate"}
    logs = result["logbench"]["otel-correlate"]
    assert len(logs["runs"]) == result["meta"]["logbench_rounds"] == 1
    assert 0 < logs["accepted_by_collector"] <= logs["records"] == logs["runs"][0]["records"]
    assert logs["dropped"] == logs["records"] - logs["accepted_by_collector"]
    assert logs["exported_per_s_min"] <= logs["exported_per_s"] <= logs["exported_per_s_max"]
    assert result["collector"]["spans"] > 0
    table = (tmp_path / "latest.md").read_text()
    assert "## fastapi" in table and "## flask" in table and "| otel-correlate |" in table
    assert "## Memory with the collector down (otel-correlate)" in table
    assert f"| otel-correlate | **{logs['exported_per_s']:,}** |" in table


@pytest.mark.parametrize("framework", ["fastapi", "flask"])
def test_the_in_process_benchmark_reports_cpu_threads_and_gc(framework: str) -> None:
    """Shape only: the reference app answers 200 in both runs, instrumented or not, and the report is whole."""
    bench = [str(ROOT / "benchmarks" / "inprocess.py"), "--framework", framework, "--requests", "300"]
    bench += ["--warmup", "50"]
    quiet = {"OTEL_TRACES_EXPORTER": "none", "OTEL_METRICS_EXPORTER": "none", "OTEL_LOGS_EXPORTER": "none"}
    instrument = str(Path(sys.executable).with_name("opentelemetry-instrument"))
    reports = {}
    for name, command, extra in (
        ("plain", [sys.executable, *bench], {}),
        ("instrumented", [instrument, sys.executable, *bench], {**quiet, "OTEL_SERVICE_NAME": "inproc"}),
    ):
        env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")} | extra
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
        assert done.returncode == 0, done.stderr[-3000:]
        reports[name] = json.loads(done.stdout.strip().splitlines()[-1])
    for name, report in reports.items():
        assert set(report) == {
            "framework",
            "requests",
            "instrumented",
            "cpu_us_per_request",
            "gc_per_generation",
            "thread_cpu_us_per_request",
        }
        assert report["framework"] == framework and report["requests"] == 300
        assert report["instrumented"] is (name == "instrumented")
        assert report["cpu_us_per_request"] > 0
        assert set(report["gc_per_generation"]) == {"0", "1", "2"}
        assert "MainThread" in report["thread_cpu_us_per_request"]
