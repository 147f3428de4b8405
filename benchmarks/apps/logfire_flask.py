"""The Flask reference endpoint under pydantic logfire (see logfire_fastapi.py)."""

import logfire
from loguru import logger

logfire.configure(send_to_logfire=False, service_name="bench-flask", console=False)
logger.add(**logfire.loguru_handler())

from flask_app import app  # noqa: E402

logfire.instrument_flask(app)
