"""What every engine spoken to over HTTP shares: one pooled client, error mapping, OpenAI pass-through.

`HTTPEngine` owns the `httpx.AsyncClient` (connection pooling for all requests of the gateway) and
turns transport and status failures into `EngineError` subclasses (engines/errors.py) at the boundary:
connect failures and connect timeouts are `EngineDown`, read timeouts `EngineTimeout`, 4xx
`EngineRejected`, 5xx `EngineError`, a body that is not JSON `EngineGarbage`.

Idle pooled connections: the engine's server closes a keep-alive connection after its own idle timeout
(uvicorn's default, vLLM's ``VLLM_HTTP_TIMEOUT_KEEP_ALIVE``: 5 s). A connection the engine closes just
as the gateway reuses it fails before any response byte (``ReadError``, ``RemoteProtocolError``), so the
pool's own idle expiry is kept shorter (``keepalive_s``, 2 s) and such a failure on a *reused*
connection is retried on another (`_send`): the engine never saw the request, or saw it and aborted it
when the connection went. Any other transport failure is `EngineDown` only when the engine then fails a
fresh `/health` too; a healthy engine makes it a plain `EngineError` (nothing is taken out). It also carries
controller `none`'s pass-through of an OpenAI request to the engine's own `/v1/...` routes, which
vLLM and SGLang both serve. `vllm_http` and `sglang_http` add each engine's token-level calls.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx

from .base import Capabilities
from .errors import EngineDown, EngineError, EngineGarbage, EngineRejected, EngineTimeout

__all__ = ["HTTPEngine", "decode_response", "error_message", "token_list"]

log = logging.getLogger(__name__)

#: a reused connection that fails before the response: tries on another connection (idle connections
#: of a burst expire together, so the next one taken from the pool may be stale as well)
STALE_RETRIES = 3
HEALTH_TIMEOUT_S = 5.0


class HTTPEngine:
    """An engine server at `url` (e.g. ``http://127.0.0.1:8000``) behind one pooled `httpx` client."""

    name = "http"
    capabilities = Capabilities(passthrough=True)  # vLLM and SGLang both serve OpenAI's routes

    def __init__(self, url: str, model: str | None = None, *, timeout_s: float = 120.0,
                 connect_timeout_s: float = 5.0, max_connections: int = 256, keepalive_s: float = 2.0,
                 client: httpx.AsyncClient | None = None) -> None:
        if keepalive_s < 0:
            raise ValueError(f"keepalive_s must be >= 0, got {keepalive_s}")
        self.url = url.rstrip("/")
        self.model = model or ""
        self._own_client = client is None
        self.client = client or httpx.AsyncClient(
            base_url=self.url,
            timeout=httpx.Timeout(timeout_s, connect=connect_timeout_s),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections,
                                keepalive_expiry=keepalive_s))
        self.stale_retries = 0  # reused connections that failed before the response and were tried again

    async def _send(self, method: str, path: str, body: dict[str, Any] | None = None,
                    headers: dict[str, str] | None = None, timeout: float | None = None) -> httpx.Response:
        """The engine's response, headers read and body not yet (the caller reads and closes it).

        A reused connection failing before the response headers is retried on another one; every
        other failure is mapped (`_lost` for transport errors that need a health check to name).
        """
        extra: dict[str, Any] = {} if timeout is None else {"timeout": timeout}
        if self.client.is_closed:  # a call still running while its owner shut the adapter down
            raise EngineDown(f"engine adapter for {self.url} is closed; {method} {path} was not sent")
        for attempt in range(STALE_RETRIES + 1):
            trace = _Trace()
            request = self.client.build_request(method, path, json=body, headers=headers,
                                                extensions={"trace": trace}, **extra)
            try:
                return await self.client.send(request, stream=True)
            except httpx.TimeoutException as exc:
                kind = "connecting to" if isinstance(exc, httpx.ConnectTimeout) else "waiting for"
                cls = EngineDown if isinstance(exc, httpx.ConnectTimeout) else EngineTimeout
                raise cls(f"timed out {kind} the engine at {self.url}{path}") from exc
            except httpx.ConnectError as exc:
                raise EngineDown(f"engine at {self.url} unreachable ({type(exc).__name__}: {exc})") from exc
            except httpx.TransportError as exc:
                if trace.reused and not trace.answered and attempt < STALE_RETRIES:
                    self.stale_retries += 1
                    log.debug("engine %s closed a reused connection before answering %s (%s); trying another",
                              self.url, path, type(exc).__name__)
                    continue
                raise await self._lost(path, exc) from exc
        raise AssertionError("unreachable")  # the loop returns or raises

    async def _lost(self, path: str, exc: httpx.TransportError) -> EngineError:
        """A connection failed under a call: `EngineDown` when the engine fails a fresh health check too."""
        what = f"connection to the engine at {self.url} failed during {path} ({type(exc).__name__}: {exc})"
        if path != "/health" and await self.health():
            return EngineError(what + "; the engine answers its health check")
        return EngineDown(f"engine at {self.url} unreachable: {what}")

    async def _call(self, method: str, path: str, body: dict[str, Any] | None = None,
                    request_id: str | None = None, *, timeout: float | None = None) -> Any:
        """The decoded JSON answer of one call, or the mapped `EngineError`."""
        headers = {"X-Request-Id": request_id} if request_id else None
        response = await self._send(method, path, body, headers, timeout)
        try:
            await response.aread()
        except httpx.TimeoutException as exc:
            raise EngineTimeout(f"timed out reading the answer of the engine at {self.url}{path}") from exc
        except httpx.TransportError as exc:
            raise await self._lost(path, exc) from exc
        finally:
            await response.aclose()
        return decode_response(response, f"{self.url}{path}")

    async def start(self) -> None:
        """Nothing to do for a server that is already running (adapters resolve the model name here)."""

    async def health(self) -> bool:
        """The engine answers ``/health`` with 200 (a stale pooled connection is retried, not failed)."""
        try:
            response = await self._send("GET", "/health", timeout=HEALTH_TIMEOUT_S)
        except EngineError:
            return False
        try:
            await response.aread()
        except httpx.HTTPError:
            return False
        finally:
            await response.aclose()
        return response.status_code == 200

    # --- controller `none`: the request goes to the engine unchanged --------------------
    async def passthrough(self, path: str, body: dict[str, Any]) -> Any:
        return await self._call("POST", path, body)

    async def passthrough_stream(self, path: str, body: dict[str, Any]) -> AsyncIterator[bytes]:
        """The engine's SSE byte stream for `body`, unchanged (errors before the first byte raise)."""
        response = await self._send("POST", path, body)
        if response.status_code != 200:
            await response.aread()
            await response.aclose()
            decode_response(response, f"{self.url}{path}")  # raises the mapped error
        return self._stream(response, path)

    async def _stream(self, response: httpx.Response, path: str) -> AsyncIterator[bytes]:
        """The body's bytes; a connection failing after the first byte is `EngineTimeout`, or (`_lost`)
        `EngineDown` only when the engine then fails its health check too."""
        try:
            async for chunk in response.aiter_raw():
                yield chunk
        except httpx.TimeoutException as exc:
            raise EngineTimeout(f"timed out reading the stream of {self.url}{path}") from exc
        except httpx.TransportError as exc:
            raise await self._lost(f"{path} (mid-stream)", exc) from exc
        finally:
            await response.aclose()

    async def close(self) -> None:
        if self._own_client:
            await self.client.aclose()


class _Trace:
    """httpcore's trace hook for one attempt: was the connection reused, did response headers arrive."""

    __slots__ = ("answered", "reused")

    def __init__(self) -> None:
        self.reused = True  # until the attempt opens a connection of its own
        self.answered = False

    async def __call__(self, event: str, info: dict[str, Any]) -> None:
        if event.startswith("connection.connect_tcp.") or event.startswith("connection.connect_unix_socket."):
            self.reused = False
        elif event.endswith("receive_response_headers.complete"):
            self.answered = True


def decode_response(response: httpx.Response, where: str) -> Any:
    """`response`'s JSON body, or the `EngineError` its status or body calls for."""
    try:
        data = response.json()
    except ValueError:
        data = None
    if response.status_code >= 400:
        message = error_message(data) or response.text[:200]
        if 400 <= response.status_code < 500:
            raise EngineRejected(f"engine rejected the request ({response.status_code}): {message}")
        raise EngineError(f"engine error {response.status_code} from {where}: {message}")
    if data is None:
        raise EngineGarbage(f"{where}: response is not JSON: {response.text[:120]!r}")
    return data


def error_message(data: Any) -> str | None:
    """The message of an OpenAI-style (``{"error": {"message"}}``), flat or FastAPI error body."""
    if isinstance(data, dict):
        err = data.get("error", data)
        if isinstance(err, dict) and isinstance(err.get("message"), str):
            return err["message"]
        if isinstance(data.get("detail"), str):
            return data["detail"]
    return None


def token_list(data: Any, key: str, where: str) -> list[int]:
    """``data[key]`` when it is a list of ints, else `EngineGarbage` naming `where`."""
    tokens = data.get(key) if isinstance(data, dict) else None
    if not isinstance(tokens, list) or not all(type(t) is int for t in tokens):
        raise EngineGarbage(f"{where}: no {key!r} list of ints in the response")
    return tokens
