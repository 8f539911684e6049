"""Explorer over any OpenAI-compatible chat-completions endpoint with tools, through the `openai` SDK.

Works with OpenAI itself, our own gateway, or a vLLM server started with tool calling enabled
(`--base-url http://host:8000/v1`). Tool calls arrive as ``message.tool_calls`` (id, function
name, JSON-string arguments); results go back as ``role: tool`` messages with the matching
``tool_call_id``. Token counts come from ``usage`` (cached prompt tokens priced apart when given).
"""

from __future__ import annotations

from typing import Any

from .base import ExplorerError
from .llm import LLMExplorer, Reply, ToolCall, parse_arguments
from .tools import openai_tools

__all__ = ["OpenAIExplorer"]


class OpenAIExplorer(LLMExplorer):
    name = "openai"
    key_env = "OPENAI_API_KEY"

    def client(self) -> Any:
        if self._client is None:
            try:
                import openai
            except ImportError:
                raise ExplorerError("the openai explorer needs the 'openai' package: "
                                    "pip install 'autotts[discovery]'") from None
            self._client = openai.OpenAI(api_key=self.api_key(), base_url=self.base_url, timeout=self.timeout_s,
                                         max_retries=2)
        return self._client

    def _open(self, system: str, user: str) -> list[dict[str, Any]]:
        return [{"role": "system", "content": system}, {"role": "user", "content": user}]

    def _call(self, messages: list[dict[str, Any]]) -> Reply:
        import openai

        try:
            resp = self.client().chat.completions.create(model=self.model, messages=messages, tools=openai_tools(),
                                                         max_completion_tokens=self.max_tokens)
        except openai.APIStatusError as exc:
            raise ExplorerError(f"openai explorer: HTTP {exc.status_code} from chat completions: "
                                f"{str(exc)[:300]}") from None
        except openai.APIError as exc:
            raise ExplorerError(f"openai explorer: {type(exc).__name__}: {str(exc)[:300]}") from None
        if not resp.choices:
            raise ExplorerError("openai explorer: the reply has no choices")
        message = resp.choices[0].message
        calls = [ToolCall(tc.id, tc.function.name, parse_arguments(tc.function.arguments), tc.function.arguments or "")
                 for tc in message.tool_calls or []]
        usage = resp.usage
        prompt = int(getattr(usage, "prompt_tokens", 0) or 0)
        details = getattr(usage, "prompt_tokens_details", None)
        cached = int(getattr(details, "cached_tokens", 0) or 0) if details is not None else 0
        assistant: dict[str, Any] = {"role": "assistant", "content": message.content or ""}
        if calls:
            assistant["tool_calls"] = [{"id": c.id, "type": "function",
                                        "function": {"name": c.name, "arguments": c.raw}} for c in calls]
        return Reply(message.content or "", calls, prompt - cached, int(getattr(usage, "completion_tokens", 0) or 0),
                     cached, 0, raw=assistant)

    def _append(self, messages, reply, results) -> None:
        messages.append(reply.raw)
        messages.extend({"role": "tool", "tool_call_id": call.id, "content": text} for call, text, _ in results)

    def _nudge(self, messages, reply, text) -> None:
        messages.append(reply.raw)
        messages.append({"role": "user", "content": text})
