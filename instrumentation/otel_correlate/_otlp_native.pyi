"""Types of the C encoder and checks built from ``_otlp_native.c`` (see ``_otlp_encode`` and ``_native``)."""

from collections.abc import Callable, Sequence
from typing import Any

def configure(
    span_type: type,
    span_context_type: type,
    status_type: type,
    queued_log_type: type,
    kinds: dict[Any, bytes],
    status_codes: dict[Any, int],
    severities: dict[Any, int],
    /,
) -> None: ...
def spans(items: Sequence[Any], tag: int, fallback: Callable[[Any], bytes], /) -> bytes: ...
def logs(items: Sequence[Any], tag: int, fallback: Callable[[Any], bytes], /) -> bytes: ...
def plain(attributes: dict[Any, Any], /) -> int: ...
def settled(
    items: dict[Any, Any],
    keys: dict[str, str],
    texts: dict[str, str | None],
    keep: str,
    key_verdict: Callable[[str], str],
    scan: Callable[[str], str | None],
    /,
) -> bool: ...
def request_attributes(
    raw_method: str,
    scheme: str,
    path: str,
    query: str,
    version: str | None,
    headers: dict[str, str],
    client: tuple[str, int | None] | None,
    server: tuple[str, int] | None,
    known: frozenset[str],
    /,
) -> tuple[str, dict[str, Any], dict[str, Any]] | None: ...
def configure_metrics(
    consumer_type: type,
    sum_type: type,
    histogram_type: type,
    aligned_reservoir_type: type,
    simple_reservoir_type: type,
    bucket_type: type,
    trace_filter_type: type,
    span_types: frozenset[type],
    span_key: str,
    invalid_span: Any,
    get_current: Callable[[], Any],
    namespace: dict[str, Any],
    time_ns: Callable[[], int],
    no_attributes: frozenset[Any],
    span_context_type: type,
    trace_flags_type: type,
    meter_config_proxy_type: type,
    context_type: type,
    /,
) -> None: ...
def record(instrument: Any, amount: Any, magnitude: Any, attributes: Any, context: Any, /) -> bool: ...
def configure_spans(
    tracer_type: type,
    span_type: type,
    attributes_type: type,
    random_ids_type: type,
    default_on: Any,
    record_and_sample: Any,
    sampled_flags: Any,
    sampled_random_flags: Any,
    trace_state: Any,
    unset_status: Any,
    lock_factory: Callable[[], Any],
    sdk_namespace: dict[str, Any],
    max_trace_id: int,
    max_span_id: int,
    readable_span_type: type,
    /,
) -> None: ...
def configure_sampling(
    parent_based_types: tuple[type, ...],
    parent_based_should_sample: Callable[..., Any],
    ratio_type: type,
    ratio_should_sample: Callable[..., Any],
    static_types: tuple[type, ...],
    static_should_sample: Callable[..., Any],
    drop: Any,
    unsampled_flags: Any,
    unsampled_random_flags: Any,
    non_recording_span_type: type,
    /,
) -> None: ...
def end_span(span: Any, name: str | None, attributes: dict[str, Any], /) -> bool: ...
def start_span(
    tracer: Any,
    name: str,
    context: Any,
    kind: Any,
    attributes: Any,
    links: Any,
    start_time: int | None,
    record_exception: bool,
    set_status_on_exception: bool,
    /,
) -> Any: ...
def configure_span_dispatch(
    multi_type: type,
    multi_methods: tuple[Callable[..., Any], Callable[..., Any], Callable[..., Any]],
    empty_methods: tuple[Callable[..., Any], ...],
    batch_on_end: Callable[..., Any],
    is_enabled: Callable[..., Any],
    noop_metrics_type: type,
    noop_metrics_start: Callable[..., Any] | None,
    noop: Callable[[], None] | None,
    /,
) -> None: ...
def configure_logs(processor_type: type, queued_type: type, /) -> None: ...
def emit_log(
    logger: Any,
    timestamp: int | None,
    severity_number: Any,
    severity_text: str,
    body: Any,
    attributes: dict[str, Any],
    context: Any,
    plain: bool,
    /,
) -> bool: ...
def configure_requests(
    state_type: type,
    asgi_server: dict[str, Any],
    web: dict[str, Any],
    context: dict[str, Any],
    fastsdk: dict[str, Any],
    propagate: dict[str, Any],
    trace: dict[str, Any],
    request_keys: Callable[..., Any],
    with_keys: Callable[..., Any],
    new_request_id: Callable[[], str],
    validate_value: Callable[[object], str | None],
    promote_inbound: Callable[..., Any],
    native_attributes: Callable[..., Any],
    native_start: Callable[..., Any],
    active_started: Callable[..., Any],
    server_kind: Any,
    keys_context_key: str,
    baggage_key: str,
    request_id_key: str,
    /,
) -> None: ...
def start_request(
    state: Any,
    instruments: Any,
    header_name: bytes,
    raw_method: str,
    scheme: str,
    path: str,
    query: str,
    version: str | None,
    headers: dict[str, str],
    request_id: str | None,
    client: tuple[str, int | None] | None,
    server: tuple[str, int] | None,
    /,
) -> bool: ...
