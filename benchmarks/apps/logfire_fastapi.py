"""The FastAPI reference endpoint under pydantic logfire, exporting OTLP to the benchmark collector.

``send_to_logfire=False`` plus ``OTEL_EXPORTER_OTLP_ENDPOINT`` (set by run.py) is
logfire's documented way to use another OTLP backend. loguru records go through
``logfire.loguru_handler()``, next to loguru's default stderr sink as elsewhere.
"""

import logfire
from loguru import logger

logfire.configure(send_to_logfire=False, service_name="bench-fastapi", console=False)
logger.add(**logfire.loguru_handler())

from fastapi_app import app  # noqa: E402

logfire.instrument_fastapi(app)
