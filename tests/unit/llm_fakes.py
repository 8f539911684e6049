"""Local stand-ins for hosted LLM APIs, speaking just enough of the documented wire formats.

`FakeLLMServer` is an `http.server` on 127.0.0.1 (random port) that answers
``POST /v1/messages`` (Anthropic Messages API: ``tool_use`` content blocks, ``stop_reason``,
``usage.input_tokens/output_tokens``) and ``POST /v1/chat/completions`` (OpenAI chat completions:
``message.tool_calls`` with JSON-string ``arguments``, ``finish_reason``, ``usage.prompt_tokens/
completion_tokens``). A script (one function per call, given the request body) decides each
reply's tool calls; the server records every request and the usage it reported, so tests can
check what the real SDKs sent and what the loop accounted. Used by test_discovery_explorers.py.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

ToolCalls = list[tuple[str, dict[str, Any]]]  # (tool name, arguments)
Script = list[Callable[[dict[str, Any]], ToolCalls]]


class FakeLLMServer:
    def __init__(self, script: Script, usage: list[tuple[int, int]]) -> None:
        self.script, self.usage = list(script), list(usage)
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.reported: list[tuple[int, int]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
                server.requests.append(body)
                server.headers.append({k.lower(): v for k, v in self.headers.items()})
                if self.path.endswith("/v1/messages"):
                    status, reply = server._anthropic(body, self.headers)
                elif self.path.endswith("/v1/chat/completions"):
                    status, reply = server._openai(body, self.headers)
                else:
                    status, reply = 404, {"error": {"message": f"no route {self.path}"}}
                data = json.dumps(reply).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> FakeLLMServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def _next(self, body: dict[str, Any]) -> tuple[ToolCalls, tuple[int, int]]:
        n = len(self.reported)
        calls = self.script[n](body) if n < len(self.script) else []
        usage = self.usage[n % len(self.usage)]
        self.reported.append(usage)
        return calls, usage

    def _anthropic(self, body, headers) -> tuple[int, dict[str, Any]]:
        key = headers.get("x-api-key") or headers.get("authorization", "").removeprefix("Bearer ")
        if not key or not headers.get("anthropic-version"):
            return 401, {"type": "error", "error": {"type": "authentication_error", "message": "missing headers"}}
        calls, (n_in, n_out) = self._next(body)
        content = [{"type": "text", "text": "Trying an idea."}] + [
            {"type": "tool_use", "id": f"toolu_{len(self.reported)}_{i}", "name": name, "input": args}
            for i, (name, args) in enumerate(calls)]
        return 200, {"id": f"msg_{len(self.reported)}", "type": "message", "role": "assistant", "model": body["model"],
                     "content": content, "stop_reason": "tool_use" if calls else "end_turn", "stop_sequence": None,
                     "usage": {"input_tokens": n_in, "output_tokens": n_out}}

    def _openai(self, body, headers) -> tuple[int, dict[str, Any]]:
        if not headers.get("authorization", "").startswith("Bearer "):
            return 401, {"error": {"message": "missing bearer token", "type": "invalid_request_error"}}
        calls, (n_in, n_out) = self._next(body)
        tool_calls = [{"id": f"call_{len(self.reported)}_{i}", "type": "function",
                       "function": {"name": name, "arguments": json.dumps(args)}}
                      for i, (name, args) in enumerate(calls)]
        message: dict[str, Any] = {"role": "assistant", "content": None if calls else "Done."}
        if tool_calls:
            message["tool_calls"] = tool_calls
        return 200, {"id": f"chatcmpl-{len(self.reported)}", "object": "chat.completion", "created": 1700000000,
                     "model": body["model"], "choices": [{"index": 0, "message": message,
                                                          "finish_reason": "tool_calls" if calls else "stop"}],
                     "usage": {"prompt_tokens": n_in, "completion_tokens": n_out, "total_tokens": n_in + n_out}}
