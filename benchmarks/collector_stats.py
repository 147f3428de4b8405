"""Read the benchmark collector's own counters (its Prometheus /metrics endpoint)."""

from __future__ import annotations

import urllib.request


def scrape(url: str) -> dict[str, float]:
    """Sum every sample of each metric family by name (labels dropped)."""
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    sums: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name_labels, _, value = line.rpartition(" ")
        name = name_labels.split("{", 1)[0]
        try:
            sums[name] = sums.get(name, 0.0) + float(value)
        except ValueError:
            continue
    return sums


def accepted(url: str, kind: str) -> int:
    """Items of ``kind`` (spans, log_records, metric_points) the OTLP receiver accepted so far."""
    sums = scrape(url)
    total = 0.0
    for name, value in sums.items():
        if name.startswith(f"otelcol_receiver_accepted_{kind}"):
            total += value
    return int(total)
