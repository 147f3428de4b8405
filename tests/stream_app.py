"""A Flask service with a streamed export, for ``tests/test_processes.py``.

``GET /orders/<order_id>/lines`` streams three lines, 0.2 s apart, with a loguru
line per chunk: the chunks are made while the server sends them, after the view
has returned.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from flask import Flask, Response
from loguru import logger

app = Flask("stream")
PAUSE_S = 0.2


@app.get("/orders/<order_id>/lines")
def lines(order_id: str) -> Response:
    def generate() -> Iterator[str]:
        for n in range(3):
            if n:
                time.sleep(PAUSE_S)
            logger.info("export line {}", n)
            yield f"{order_id},{n}\n"

    return Response(generate(), mimetype="text/csv")
