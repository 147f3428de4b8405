"""The SLO spec generates alerts/slo.yml; the committed file must match it."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from otel_correlate import _slo


def test_committed_slo_rules_match_the_spec() -> None:
    assert _slo.OUTPUT.read_text() == _slo.render(), (
        "alerts/slo.yml is stale: run `python -m otel_correlate._slo`"
    )


def test_check_mode_reports_a_stale_file(tmp_path: Path) -> None:
    stale = tmp_path / "slo.yml"
    stale.write_text("groups: []\n")
    assert _slo.main(["--check", "--output", str(stale)]) == 1
    assert _slo.main(["--output", str(stale)]) == 0
    assert _slo.main(["--check", "--output", str(stale)]) == 0


def test_orders_spec_yields_recordings_and_page_and_ticket_alerts() -> None:
    groups = yaml.safe_load(_slo.render())["groups"]
    assert [g["name"] for g in groups] == ["slo-orders-availability", "slo-orders-latency"]
    availability = groups[0]["rules"]
    assert [r.get("record") for r in availability if "record" in r] == [
        "slo:objective:ratio",
        "slo:sli_error:ratio_rate5m",
        "slo:sli_error:ratio_rate30m",
        "slo:sli_error:ratio_rate1h",
        "slo:sli_error:ratio_rate6h",
        "slo:sli_error:ratio_rate3d",
    ]
    alerts = {r["labels"]["severity"]: r for r in availability if "alert" in r}
    assert alerts["critical"]["alert"] == alerts["warning"]["alert"] == "OrdersAvailabilityErrorBudgetBurn"
    assert alerts["critical"]["expr"] == (
        '(slo:sli_error:ratio_rate1h{service="orders", slo="availability"} > 0.0144 and '
        'slo:sli_error:ratio_rate5m{service="orders", slo="availability"} > 0.0144)\nor\n'
        '(slo:sli_error:ratio_rate6h{service="orders", slo="availability"} > 0.006 and '
        'slo:sli_error:ratio_rate30m{service="orders", slo="availability"} > 0.006)\n'
    )
    assert alerts["warning"]["expr"] == (
        '(slo:sli_error:ratio_rate3d{service="orders", slo="availability"} > 0.001 and '
        'slo:sli_error:ratio_rate6h{service="orders", slo="availability"} > 0.001)\n'
    )
    latency = {r.get("record"): r["expr"] for r in groups[1]["rules"] if "record" in r}
    assert latency["slo:sli_error:ratio_rate5m"] == (
        '1 - (sum(rate(http_server_request_duration_seconds_bucket{job="orders", le="0.5"}[5m])) / '
        'sum(rate(http_server_request_duration_seconds_count{job="orders"}[5m])))'
    )


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("slos: []\n", "needs a top-level `service: <name>`"),
        (
            "service: s\nslos:\n  - {name: a, objective: 99.9, total: t, description: d, errors: e}\n",
            "objective=99.9",
        ),
        (
            "service: s\nslos:\n  - {name: a, objective: 0.99, total: t, description: d}\n",
            "exactly one of `errors` and `good`",
        ),
    ],
)
def test_bad_spec_names_the_file_and_the_field(tmp_path: Path, spec: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(spec)
    with pytest.raises(_slo.SpecError, match=message) as raised:
        _slo.load_spec(path)
    assert str(path) in str(raised.value)
