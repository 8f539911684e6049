"""Explorer over the Anthropic Messages API with tool use, through the `anthropic` SDK.

Tool calls arrive as ``tool_use`` content blocks (id, name, input); results go back in the next
user turn as ``tool_result`` blocks with the matching ``tool_use_id``. Token counts come from each
reply's ``usage`` (input, output, cache reads and writes). `--base-url` points the SDK at any
compatible server (a proxy, or the fake one the tests run).
"""

from __future__ import annotations

from typing import Any

from .base import ExplorerError
from .llm import LLMExplorer, Reply, ToolCall, parse_arguments
from .tools import anthropic_tools

__all__ = ["AnthropicExplorer"]


class AnthropicExplorer(LLMExplorer):
    name = "anthropic"
    key_env = "ANTHROPIC_API_KEY"

    def client(self) -> Any:
        if self._client is None:
            try:
                import anthropic
            except ImportError:
                raise ExplorerError("the anthropic explorer needs the 'anthropic' package: "
                                    "pip install 'autotts[discovery]'") from None
            self._client = anthropic.Anthropic(api_key=self.api_key(), base_url=self.base_url,
                                               timeout=self.timeout_s, max_retries=2)
        return self._client

    def _open(self, system: str, user: str) -> list[dict[str, Any]]:
        self._system = system
        return [{"role": "user", "content": user}]

    def _call(self, messages: list[dict[str, Any]]) -> Reply:
        import anthropic

        try:
            resp = self.client().messages.create(model=self.model, max_tokens=self.max_tokens, system=self._system,
                                                 messages=messages, tools=anthropic_tools())
        except anthropic.APIStatusError as exc:
            raise ExplorerError(f"anthropic explorer: HTTP {exc.status_code} from the Messages API: "
                                f"{str(exc)[:300]}") from None
        except anthropic.APIError as exc:
            raise ExplorerError(f"anthropic explorer: {type(exc).__name__}: {str(exc)[:300]}") from None
        text, calls, blocks = [], [], []
        for block in resp.content:
            if block.type == "text":
                text.append(block.text)
                blocks.append({"type": "text", "text": block.text})
            elif block.type == "tool_use":
                calls.append(ToolCall(block.id, block.name, parse_arguments(block.input), str(block.input)))
                blocks.append({"type": "tool_use", "id": block.id, "name": block.name, "input": block.input})
        usage = resp.usage
        return Reply("\n".join(text), calls, int(usage.input_tokens or 0), int(usage.output_tokens or 0),
                     int(getattr(usage, "cache_read_input_tokens", 0) or 0),
                     int(getattr(usage, "cache_creation_input_tokens", 0) or 0), raw=blocks)

    def _append(self, messages, reply, results) -> None:
        messages.append({"role": "assistant", "content": reply.raw})
        messages.append({"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": call.id, "content": text, "is_error": is_error}
            for call, text, is_error in results]})

    def _nudge(self, messages, reply, text) -> None:
        messages.append({"role": "assistant", "content": reply.raw or [{"type": "text", "text": "(no reply)"}]})
        messages.append({"role": "user", "content": text})
