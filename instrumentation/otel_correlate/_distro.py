"""The distro and configurator that ``opentelemetry-instrument`` loads.

Registered under the ``opentelemetry_distro`` and ``opentelemetry_configurator``
entry points as ``otel_correlate``. The distro sets production defaults (every one
overridable by its standard ``OTEL_*`` variable) and customises how the FastAPI
and Flask instrumentors load; the configurator builds the SDK pipeline of
:mod:`otel_correlate._pipeline` and bridges loguru and stdlib logging.
"""

from __future__ import annotations

import logging
import os
from importlib import metadata
from typing import Any

from opentelemetry.instrumentation.distro import BaseDistro  # type: ignore[attr-defined]

from otel_correlate import _web

_log = logging.getLogger("otel_correlate")

#: Defaults the distro sets when the variable is unset (``os.environ.setdefault``).
DEFAULTS: dict[str, str] = {
    "OTEL_TRACES_EXPORTER": "otlp",
    "OTEL_METRICS_EXPORTER": "otlp",
    "OTEL_LOGS_EXPORTER": "otlp",
    "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
    "OTEL_EXPORTER_OTLP_ENDPOINT": "http://localhost:4318",
    "OTEL_SEMCONV_STABILITY_OPT_IN": "http",
    "OTEL_PYTHON_FASTAPI_EXCLUDED_URLS": _web.EXCLUDED_URLS,
    "OTEL_PYTHON_FLASK_EXCLUDED_URLS": _web.EXCLUDED_URLS,
    "OTEL_METRICS_EXEMPLAR_FILTER": "trace_based",
    "OTEL_METRIC_EXPORT_INTERVAL": "15000",
}


def _version() -> str:
    try:
        return metadata.version("otel-correlate")
    except metadata.PackageNotFoundError:  # pragma: no cover - source checkout without install
        return "0+unknown"


class CorrelateDistro(BaseDistro):  # type: ignore[misc]
    """Production defaults, and FastAPI/Flask instrumentors that also carry business keys."""

    def _configure(self, **kwargs: Any) -> None:
        for name, value in DEFAULTS.items():
            os.environ.setdefault(name, value)

    def load_instrumentor(self, entry_point: Any, **kwargs: Any) -> None:
        name = entry_point.name
        if name in ("fastapi", "flask"):
            # FastAPI and Flask get our lean server middleware instead of the contrib
            # ASGI/WSGI ones (same span and metrics, a fraction of the per-request work),
            # patched when the service imports the framework: a Flask service never
            # imports FastAPI (and pydantic) just because both are installed.
            _when_imported(name, _patch)
        elif name in _ON_IMPORT:
            # Client instrumentors whose library the service may never use: loaded
            # when it is imported, instead of importing it into every service.
            def load(_module: Any) -> None:
                try:
                    BaseDistro.load_instrumentor(self, entry_point, **kwargs)
                except Exception:  # never fail the service over its telemetry
                    _log.exception("otel-correlate: could not instrument %s", name)

            _when_imported(_ON_IMPORT[name], load)
        else:
            super().load_instrumentor(entry_point, **kwargs)


#: Instrumentor entry point -> the module whose import loads it.
_ON_IMPORT = {"httpx": "httpx", "httpx2": "httpx2", "requests": "requests"}


def _patch(module: Any) -> None:
    name = module.__name__
    try:
        if name == "fastapi":
            from otel_correlate._fastapi import patch_fastapi_class

            patch_fastapi_class()
        elif name == "flask":
            from otel_correlate._flask import patch_flask_class

            patch_flask_class()
    except Exception:  # never fail the service's start over its telemetry
        _log.exception("otel-correlate: could not add business keys to %s; tracing still works", name)


def _when_imported(module: str, hook: Any) -> None:
    """Run ``hook(module)`` once ``module`` is imported (at once when it already is)."""
    import wrapt

    wrapt.register_post_import_hook(hook, module)


def service_name_missing() -> bool:
    """True when neither ``OTEL_SERVICE_NAME`` nor ``service.name`` in ``OTEL_RESOURCE_ATTRIBUTES`` is set."""
    if os.environ.get("OTEL_SERVICE_NAME", "").strip():
        return False
    attributes = os.environ.get("OTEL_RESOURCE_ATTRIBUTES", "")
    return not any(item.split("=", 1)[0].strip() == "service.name" for item in attributes.split(","))


def sampling_problem() -> str | None:
    """What is wrong with ``OTEL_TRACES_SAMPLER`` / ``OTEL_TRACES_SAMPLER_ARG``, said so a user can fix it.

    The SDK falls back to keeping every trace on a sampler name it does not know or
    a ratio it cannot use, with a terse warning (and "could not convert" for a
    ratio out of range). None when the setting is usable or absent.

    Example:
        >>> os.environ["OTEL_TRACES_SAMPLER"] = "parentbased_traceidratio"
        >>> os.environ["OTEL_TRACES_SAMPLER_ARG"] = "10%"
        >>> "not a ratio from 0 to 1" in sampling_problem()
        True
    """
    from opentelemetry.sdk.trace import sampling

    name = os.environ.get("OTEL_TRACES_SAMPLER", "").strip().lower()
    if not name:
        return None
    known = sorted(sampling._KNOWN_SAMPLERS)  # the names the SDK's default sampler reads
    if name not in known:
        return (
            f"otel-correlate: OTEL_TRACES_SAMPLER={name!r} is not a sampler the SDK knows, so every "
            f"trace is kept (parentbased_always_on). Use one of: {', '.join(known)}."
        )
    if name.endswith("traceidratio"):
        raw = os.environ.get("OTEL_TRACES_SAMPLER_ARG", "")
        try:
            rate = float(raw)
        except ValueError:
            rate = float("nan")
        if not 0.0 <= rate <= 1.0:
            return (
                f"otel-correlate: OTEL_TRACES_SAMPLER_ARG={raw!r} is not a ratio from 0 to 1, so "
                f"{name} keeps every trace. Set it to the share of traces to keep, for example "
                "OTEL_TRACES_SAMPLER_ARG=0.1."
            )
    return None


class CorrelateConfigurator:
    """Builds the tracer, meter and logger providers and the log bridges.

    ``opentelemetry-instrument`` calls ``configure(auto_instrumentation_version=...)``
    once, before the instrumentors load (and before gunicorn forks its workers;
    the SDK re-creates its export threads and ``service.instance.id`` in each worker).
    """

    _configured = False

    def configure(self, **kwargs: Any) -> None:
        """Configure the SDK once per process; later calls do nothing."""
        if CorrelateConfigurator._configured:
            return
        CorrelateConfigurator._configured = True
        if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
            return
        from otel_correlate import _pipeline

        _pipeline.guard_internal_logs()
        if service_name_missing():
            _log.warning(
                "otel-correlate: no service name is set, so this service reports as "
                "'unknown_service'. Start it with `opentelemetry-instrument --service_name <name> ...` "
                "or set OTEL_SERVICE_NAME."
            )
        problem = sampling_problem()
        if problem is not None:
            _log.warning(problem)
        try:
            configure_sdk(auto_instrumentation_version=kwargs.get("auto_instrumentation_version"))
        except Exception:
            _log.exception("otel-correlate: telemetry could not be configured; the service runs without it")


def configure_sdk(*, auto_instrumentation_version: str | None = None) -> None:
    """Build the pipeline from the ``OTEL_*`` environment and install it globally.

    Exporters come from ``OTEL_TRACES_EXPORTER``, ``OTEL_METRICS_EXPORTER`` and
    ``OTEL_LOGS_EXPORTER`` (``otlp`` by default; ``none`` turns a signal off), the
    sampler from ``OTEL_TRACES_SAMPLER``, the resource from ``OTEL_SERVICE_NAME``
    and ``OTEL_RESOURCE_ATTRIBUTES``.
    """
    from opentelemetry import metrics, trace
    from opentelemetry._logs import set_logger_provider
    from opentelemetry.sdk._configuration import _get_exporter_names, _import_exporters
    from opentelemetry.sdk.metrics.export import MetricReader
    from opentelemetry.sdk.resources import Resource

    from otel_correlate import _logs, _pipeline, _process_metrics, _shutdown
    from otel_correlate._transport import exporter_kwargs

    span_classes, metric_classes, log_classes = _import_exporters(
        _get_exporter_names("traces"), _get_exporter_names("metrics"), _get_exporter_names("logs")
    )
    attributes: dict[str, str] = {
        "telemetry.distro.name": "otel-correlate",
        "telemetry.distro.version": _version(),
    }
    if auto_instrumentation_version:
        attributes["telemetry.auto.version"] = auto_instrumentation_version
    if any(
        cls.__module__.startswith("opentelemetry.exporter.otlp.proto.http")
        for cls in (*span_classes.values(), *log_classes.values())
    ):
        # Same OTLP bytes, a fifth of the GIL time per span and log record.
        from otel_correlate import _otlp_encode

        _otlp_encode.install()
    readers = [cls() for cls in metric_classes.values() if issubclass(cls, MetricReader)]
    # OTLP/HTTP to an http:// collector goes through http.client, not requests (_transport.py).
    providers = _pipeline.build_providers(
        resource=Resource.create(attributes),
        span_exporters=[cls(**exporter_kwargs(cls, "traces")) for cls in span_classes.values()],
        log_exporters=[cls(**exporter_kwargs(cls, "logs")) for cls in log_classes.values()],
        metric_exporters=[
            cls(**exporter_kwargs(cls, "metrics"))
            for cls in metric_classes.values()
            if not issubclass(cls, MetricReader)
        ],
        metric_readers=readers,
    )
    trace.set_tracer_provider(providers.tracer_provider)
    metrics.set_meter_provider(providers.meter_provider)
    _process_metrics.register_process_metrics(providers.meter_provider)
    set_logger_provider(providers.logger_provider)
    # Servers such as uvicorn end with the default SIGTERM action, which skips atexit:
    # flush first, or the last batch of every signal is lost at each restart.
    _shutdown.flush_on_sigterm(
        lambda: providers.force_flush(timeout_millis=int(_shutdown.FLUSH_SECONDS * 1000))
    )
    if log_classes:
        _logs.instrument_logging()
    _logs.instrument_loguru()
