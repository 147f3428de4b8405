"""CPU and memory of the service process, as OpenTelemetry process metrics.

Two observable instruments named after the semantic conventions, read only when
the metric reader collects (every export interval), so they cost nothing per
request: ``process.cpu.time`` (seconds, by ``cpu.mode``) and
``process.memory.usage`` (resident bytes). Prometheus sees them as
``process_cpu_time_seconds_total`` and ``process_memory_usage_bytes``; each
worker process reports its own under its own ``service.instance.id``.

Example:
    >>> from opentelemetry.sdk.metrics import MeterProvider
    >>> register_process_metrics(MeterProvider())
"""

from __future__ import annotations

import os
import resource
from collections.abc import Iterable

from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation

_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _cpu_time(_options: CallbackOptions) -> Iterable[Observation]:
    times = os.times()
    return [Observation(times.user, {"cpu.mode": "user"}), Observation(times.system, {"cpu.mode": "system"})]


def resident_bytes() -> int:
    """Resident memory of this process now (``/proc/self/statm``), or the peak where /proc is missing."""
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            return int(statm.read().split()[1]) * _PAGE_SIZE
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _memory(_options: CallbackOptions) -> Iterable[Observation]:
    return [Observation(resident_bytes())]


def register_process_metrics(meter_provider: MeterProvider) -> None:
    """Add the process CPU and memory instruments to ``meter_provider``."""
    meter = meter_provider.get_meter("otel_correlate.process")
    meter.create_observable_counter(
        "process.cpu.time", [_cpu_time], unit="s", description="CPU seconds used by this process, by mode."
    )
    meter.create_observable_up_down_counter(
        "process.memory.usage", [_memory], unit="By", description="Resident memory of this process."
    )
