"""The benchmark's summary and low-load turns: per-round pairing of configurations, checked on made-up data."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
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


def test_what_is_measured_once_joins_the_rows_with_its_difference_from_uninstrumented() -> None:
    run = _run_module()
    raw = {"fastapi": {"uninstrumented": [_round(4000, 250)], "otel-correlate": [_round(3000, 350)]}}
    once = {
        "fastapi": {
            "uninstrumented": {
                "rss_mb": 50.0,
                "pss_mb": 40.0,
                "pss_growth_mb": 0.1,
                "spans_per_request": 0.0,
                "logs_per_request": 0.0,
                "lowload_p50_ms": 0.70,
                "lowload_p99_ms": 1.2,
                "lowload_cpu_us_per_request": 720.0,
                "lowload_requests": 10.0,
            },
            "otel-correlate": {
                "rss_mb": 75.0,
                "pss_mb": 52.5,
                "pss_growth_mb": 0.3,
                "spans_per_request": 1.0,
                "logs_per_request": 1.0,
                "lowload_p50_ms": 0.79,
                "lowload_p99_ms": 1.4,
                "lowload_cpu_us_per_request": 893.0,
                "lowload_requests": 10.0,
                "added_lowload_p50_us": 90.0,  # against uninstrumented in its own pair, as lowload() gives them
                "added_lowload_p50_us_min": 60.0,  # its slices' lowest and highest
                "added_lowload_p50_us_max": 140.0,
                "added_lowload_cpu_us": 173.0,
            },
        }
    }
    rows = run.summarise(raw, once)["fastapi"]
    ours = rows["otel-correlate"]
    assert {k: round(v, 6) for k, v in ours.items() if k not in ("rps", "cpu_us_per_request")} == {
        "p50_ms": 1.0,
        "p99_ms": 2.0,
        "errors": 0,
        "rounds": 1,
        "rss_mb": 75.0,
        "pss_mb": 52.5,
        "pss_growth_mb": 0.3,
        "spans_per_request": 1.0,
        "logs_per_request": 1.0,
        "lowload_p50_ms": 0.79,
        "lowload_cpu_us_per_request": 893.0,
        "throughput_ratio": 0.75,
        "cpu_ratio": round(250 / 350, 6),
        "added_p50_ms": 0.0,
        "added_p99_ms": 0.0,
        "added_rss_mb": 25.0,
        "added_pss_mb": 12.5,
        "added_lowload_p50_us": 90.0,
        "added_lowload_p50_us_min": 60.0,
        "added_lowload_p50_us_max": 140.0,
        "added_lowload_cpu_us": 173.0,
    }
    assert not set(run.ADDED.values()) & set(rows["uninstrumented"])
    meta = {
        "when": "now",
        "machine": "test",
        "rounds": 1,
        "duration_s": 1.0,
        "connections": 8,
        "lowload_requests": 10,
    }
    table = run.markdown({"meta": meta, "summary": {"fastapi": rows}})
    assert "| (700 µs) | (720 µs) | 40 |" in table
    assert "| +90 µs (+60..+140) | +173 µs | 52 | +12.5 | +0.3 | 1.00 | 1.00 |" in table


class _Client:
    def __init__(self, name: str, sent: list[str]) -> None:
        self.name, self.sent = name, sent

    def get(self) -> float:
        self.sent.append(self.name)
        return float(len(self.sent))


def test_low_load_configurations_take_turns_request_by_request_in_a_rotating_order() -> None:
    run = _run_module()
    sent: list[str] = []
    clients = {name: _Client(name, sent) for name in ("a", "b", "c")}
    samples = run.interleaved(clients, 4, gap_s=0)
    assert sent == ["a", "b", "c", "b", "c", "a", "c", "a", "b", "a", "b", "c"]
    assert samples == {"a": [1.0, 6.0, 8.0, 10.0], "b": [2.0, 4.0, 9.0, 11.0], "c": [3.0, 5.0, 7.0, 12.0]}


_LOWLOAD_CONFIGS = ("uninstrumented", "a", "b")


def _lowload(
    monkeypatch: Any,
    tmp_path: Path,
    answer: Callable[[str], float],
    requests: int,
    opened: list[str],
    configs: tuple[str, ...] = _LOWLOAD_CONFIGS,
    **run_attributes: Any,
) -> dict[str, dict[str, float]]:
    """``lowload`` on fake servers: ``answer(name)`` is a request's latency; ``opened`` gets each connection's server."""
    import contextlib

    run = _run_module()
    ports = {run.PORTS["app"] + n: name for n, name in enumerate(configs, start=1)}

    class Client:
        def __init__(self, port: int) -> None:
            self.name = ports[port]
            opened.append(self.name)

        def get(self) -> float:
            return answer(self.name)

        def __enter__(self) -> Any:
            return self

        def __exit__(self, *exc: object) -> None:
            pass

    @contextlib.contextmanager
    def serving(framework: str, config: str, log: Path, env: Any = None, port: int = 0) -> Any:
        yield type("Proc", (), {"pid": port})(), f"http://127.0.0.1:{port}"

    monkeypatch.setattr(run, "serving", serving)
    monkeypatch.setattr(run, "KeepAlive", Client)
    monkeypatch.setattr(run, "cpu_ns", lambda pid: 0)
    monkeypatch.setattr(run, "LOWLOAD_GAP_S", 0.0)
    monkeypatch.setattr(run.time, "sleep", lambda _s: None)
    for name, value in run_attributes.items():
        monkeypatch.setattr(run, name, value)
    opts = run.Options(
        rounds=1,
        duration=1.0,
        connections=8,
        lowload_requests=requests,
        frameworks=["fastapi"],
        configs=list(configs),
        logbench_records=1,
        collector_seconds=1.0,
        out=tmp_path,
    )
    return run.lowload("fastapi", opts, tmp_path)


def test_low_load_pairs_each_configuration_with_uninstrumented(monkeypatch: Any, tmp_path: Path) -> None:
    """The machine's pace changes between pairs: each configuration is measured against its own pair's baseline."""
    pace = {"now": "a"}  # uninstrumented answers in 1.0 ms while paired with a, 2.0 ms with b
    latency = {"a": 1.1, "b": 2.3}

    def answer(name: str) -> float:
        if name == "uninstrumented":
            return {"a": 1.0, "b": 2.0}[pace["now"]]
        pace["now"] = name
        return latency[name]

    low = _lowload(monkeypatch, tmp_path, answer, 20, [])
    assert {c: round(r.get("added_lowload_p50_us", 0.0), 6) for c, r in low.items()} == {
        "uninstrumented": 0.0,
        "a": 100.0,
        "b": 300.0,
    }
    assert low["uninstrumented"]["lowload_requests"] == 40  # 20 in each pair, pooled


def test_low_load_pairs_take_turns_in_slices_and_report_the_slices_range(
    monkeypatch: Any, tmp_path: Path
) -> None:
    """A slow moment lands in one slice of one pair: it moves that slice, not the pair's median."""
    opened: list[str] = []

    def answer(name: str) -> float:
        if name == "uninstrumented":
            return 1.0
        if name == "a":
            return 1.5 if opened.count("a") == 1 else 1.1  # a's first slice: the machine still settling
        return 1.3

    low = _lowload(monkeypatch, tmp_path, answer, 7, opened, LOWLOAD_SLICES=3)
    # one connection per configuration of a pair, per slice; the pairs' order rotates every slice
    assert [name for name in opened if name != "uninstrumented"] == ["a", "b", "b", "a", "a", "b"]
    keys = ("added_lowload_p50_us", "added_lowload_p50_us_min", "added_lowload_p50_us_max")
    assert {c: tuple(round(low[c][k], 6) for k in keys) for c in ("a", "b")} == {
        "a": (100.0, 100.0, 500.0),
        "b": (300.0, 300.0, 300.0),
    }
    assert {c: r["lowload_requests"] for c, r in low.items()} == {"uninstrumented": 14, "a": 7, "b": 7}


def test_an_earlier_package_also_takes_turns_with_the_current_one_head_to_head(
    monkeypatch: Any, tmp_path: Path
) -> None:
    """Baselines measured in different slices carry their own noise; the two packages' own pair does not."""
    configs = ("uninstrumented", "otel-correlate@abc1234", "otel-correlate")
    latency = {"uninstrumented": 1.0, "otel-correlate@abc1234": 1.15, "otel-correlate": 1.1}
    slowdown = {"now": 0.0}  # the machine's pace, changed by each connection of a slice

    def answer(name: str) -> float:
        return latency[name] + slowdown["now"]

    class Counting(list[str]):
        def append(self, name: str) -> None:
            super().append(name)
            slowdown["now"] = 0.2 * (len(self) % 3)  # a slower machine in some slices than others

    opened = Counting()
    low = _lowload(monkeypatch, tmp_path, answer, 9, opened, configs, LOWLOAD_SLICES=3)
    earlier, current = low["otel-correlate@abc1234"], low["otel-correlate"]
    keys = [k for k in earlier if k.startswith("current_")]
    assert {k: round(earlier[k], 6) for k in keys} == {
        "current_lowload_p50_us_minus_this": -50.0,
        "current_lowload_p50_us_minus_this_min": -50.0,
        "current_lowload_p50_us_minus_this_max": -50.0,
        "current_lowload_lower_slices": 3.0,
        "current_lowload_slices": 3.0,
    }
    assert not any(k.startswith("current_") for k in current)
    # each against uninstrumented in its own pair, untouched by the head-to-head requests
    assert {c: round(low[c]["added_lowload_p50_us"], 6) for c in configs[1:]} == {
        "otel-correlate@abc1234": 150.0,
        "otel-correlate": 100.0,
    }
    # three pairs, one connection per server per slice; the head-to-head requests join no one's numbers
    assert sorted(opened) == sorted(
        ["uninstrumented"] * 6 + ["otel-correlate@abc1234"] * 6 + ["otel-correlate"] * 6
    )
    assert {c: r["lowload_requests"] for c, r in low.items()} == {
        "uninstrumented": 18,
        "otel-correlate@abc1234": 9,
        "otel-correlate": 9,
    }
    run = _run_module()
    meta = {"when": "now", "machine": "test", "rounds": 1, "duration_s": 1.0, "connections": 8}
    summary = run.summarise({"fastapi": {c: [_round(3000, 300)] for c in configs}}, {"fastapi": low})
    table = run.markdown({"meta": {**meta, "lowload_requests": 9}, "summary": summary})
    assert (
        "otel-correlate minus otel-correlate@abc1234, p50 at low load, the two taking turns request by "
        "request: median -50 µs over the slices (range -50 to -50 µs; lower in 3 of 3 slices)."
    ) in table
