"""The benchmark's summary: per-round pairing of configurations, checked on made-up rounds."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def _run_module() -> Any:
    spec = importlib.util.spec_from_file_location("bench_run", ROOT / "benchmarks" / "run.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _round(rps: float, cpu: float) -> dict[str, float]:
    return {
        "rps": rps,
        "cpu_us_per_request": cpu,
        "p50_ms": 1.0,
        "p99_ms": 2.0,
        "lowload_p50_ms": 0.4,
        "lowload_cpu_us_per_request": cpu + 100,
        "rss_mb": 50.0,
        "pss_mb": 40.0,
        "pss_growth_mb": 0.1,
        "spans_per_request": 1.0,
        "logs_per_request": 1.0,
        "errors": 0,
        "timeouts": 0,
    }


def test_the_package_is_compared_with_an_earlier_one_round_by_round() -> None:
    run = _run_module()
    raw = {
        "flask": {
            "uninstrumented": [_round(3000, 300), _round(3300, 290), _round(3100, 310)],
            "otel-correlate@abc1234": [_round(2500, 400), _round(2600, 390), _round(2400, 405)],
            "otel-correlate": [_round(2550, 390), _round(2500, 395), _round(2450, 380)],
        }
    }
    summary = run.summarise(raw)
    earlier = summary["flask"]["otel-correlate@abc1234"]
    # 390 - 400, 395 - 390, 380 - 405, round by round
    assert {k: v for k, v in earlier.items() if k.startswith("current_")} == {
        "current_cpu_us_minus_this": -10.0,
        "current_cpu_us_minus_this_min": -25.0,
        "current_cpu_us_minus_this_max": 5.0,
        "current_cpu_lower_rounds": 2.0,
    }
    assert not any(k.startswith("current_") for k in summary["flask"]["otel-correlate"])
    assert not any(k.startswith("current_") for k in summary["flask"]["uninstrumented"])
    meta = {
        "when": "now",
        "machine": "test",
        "rounds": 3,
        "duration_s": 1.0,
        "connections": 8,
        "lowload_requests": 10,
    }
    table = run.markdown({"meta": meta, "summary": summary})
    assert (
        "otel-correlate minus otel-correlate@abc1234, CPU per request round by round: median -10 µs "
        "(range -25 to +5 µs; lower in 2 of 3 rounds)."
    ) in table
