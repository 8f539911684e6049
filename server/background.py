"""Serve an ASGI app with uvicorn on a background thread: for tests, benchmarks and notebooks.

>>> with BackgroundServer(app) as url:  # doctest: +SKIP
...     httpx.get(url + "/health")
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

__all__ = ["BackgroundServer", "free_port"]


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class BackgroundServer:
    """`with BackgroundServer(app) as base_url:` runs `app` (lifespan included) until the block ends."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int | None = None,
                 start_timeout_s: float = 60.0, **uvicorn_options: Any) -> None:
        import uvicorn

        self.host, self.port = host, port or free_port(host)
        options = {"log_level": "warning", "lifespan": "on", **uvicorn_options}  # e.g. timeout_keep_alive
        config = uvicorn.Config(app, host=self.host, port=self.port, **options)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="autotts-gateway", daemon=True)
        self.start_timeout_s = start_timeout_s

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + self.start_timeout_s
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"gateway did not start on {self.url}")
            time.sleep(0.02)
        return self.url

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
