"""The service process's CPU and memory, as the distro exports them."""

from __future__ import annotations

import os

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from otel_correlate._process_metrics import register_process_metrics, resident_bytes


def test_cpu_time_by_mode_and_resident_memory_are_collected() -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    register_process_metrics(provider)
    sum(range(200_000))  # spend some CPU
    data = reader.get_metrics_data()
    assert data is not None
    metrics = {m.name: m for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics}
    assert set(metrics) == {"process.cpu.time", "process.memory.usage"}
    cpu = metrics["process.cpu.time"]
    assert cpu.unit == "s" and cpu.data.is_monotonic
    by_mode = {p.attributes["cpu.mode"]: p.value for p in cpu.data.data_points}
    assert set(by_mode) == {"user", "system"}
    assert 0 < by_mode["user"] <= os.times().user
    [memory] = metrics["process.memory.usage"].data.data_points
    assert metrics["process.memory.usage"].unit == "By"
    assert 10 * 2**20 < memory.value < 4 * 2**30  # a Python process: tens of MB, not bytes or terabytes
    provider.shutdown()


def test_resident_bytes_matches_proc_status() -> None:
    with open("/proc/self/status") as handle:
        status = dict(line.split(":", 1) for line in handle.read().splitlines() if ":" in line)
    vm_rss = int(status["VmRSS"].split()[0]) * 1024
    assert abs(resident_bytes() - vm_rss) < 8 * 2**20
