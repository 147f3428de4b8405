"""A sampler setting the SDK cannot use gets a warning that says what was wrong and what to do."""

from __future__ import annotations

import pytest

from otel_correlate._distro import sampling_problem


@pytest.mark.parametrize(
    ("sampler", "arg"),
    [
        (None, None),
        ("parentbased_always_on", None),
        ("always_off", "ignored"),
        ("parentbased_traceidratio", "0.1"),
        ("TraceIdRatio", "0"),
        ("traceidratio", "1"),
    ],
)
def test_a_usable_sampler_setting_has_no_problem(
    monkeypatch: pytest.MonkeyPatch, sampler: str | None, arg: str | None
) -> None:
    for name, value in (("OTEL_TRACES_SAMPLER", sampler), ("OTEL_TRACES_SAMPLER_ARG", arg)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    assert sampling_problem() is None


def test_an_unknown_sampler_name_is_named_with_what_the_sdk_knows(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "ratio")
    monkeypatch.delenv("OTEL_TRACES_SAMPLER_ARG", raising=False)
    assert sampling_problem() == (
        "otel-correlate: OTEL_TRACES_SAMPLER='ratio' is not a sampler the SDK knows, so every trace is "
        "kept (parentbased_always_on). Use one of: always_off, always_on, parentbased_always_off, "
        "parentbased_always_on, parentbased_traceidratio, traceidratio."
    )


@pytest.mark.parametrize("arg", ["10%", "", "2", "-0.1", "nan"])
def test_a_ratio_the_sdk_cannot_use_is_named_with_an_example(
    monkeypatch: pytest.MonkeyPatch, arg: str
) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "parentbased_traceidratio")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", arg)
    assert sampling_problem() == (
        f"otel-correlate: OTEL_TRACES_SAMPLER_ARG={arg!r} is not a ratio from 0 to 1, so "
        "parentbased_traceidratio keeps every trace. Set it to the share of traces to keep, for example "
        "OTEL_TRACES_SAMPLER_ARG=0.1."
    )
