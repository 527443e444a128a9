"""The `llm` handler: an OpenAI-compatible chat-completions call with a per-type system prompt."""

from __future__ import annotations

import json
from typing import Any

import aiohttp

from ai_agents.config import AgentLive
from ai_agents.handlers._base import HandlerError, TaskContext

SYSTEM_PROMPTS = {
    "coding": "You are a coding agent. Produce correct, minimal, well-tested code changes for the request.",
    "testing": "You are a testing agent. Design and evaluate tests; report what ran and what failed.",
    "security": "You are a security agent. Find vulnerabilities; report each with severity and a fix.",
    "compliance": "You are a compliance agent. Check the material against the named policy; list violations.",
    "documentation": "You are a documentation agent. Write clear, accurate, concise documentation.",
    "discovery": "You are a discovery agent. Map the systems, services and dependencies described.",
}


class LlmHandler:
    """POST {base_url}/chat/completions. 429 and 5xx are retryable; other 4xx fail the task."""

    def __init__(
        self, *, base_url: str, model: str, api_key: str | None, timeout_seconds: float, max_tokens: int
    ) -> None:
        self._url = base_url.rstrip("/") + "/chat/completions"
        self._model = model
        self._max_tokens = max_tokens
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._session = aiohttp.ClientSession(headers=headers)

    def reconfigure(self, live: AgentLive) -> None:
        # The endpoint and its key need a restart (a new session); the model and limits apply per request.
        self._model = live.llm_model
        self._max_tokens = live.llm_max_tokens
        self._timeout = aiohttp.ClientTimeout(total=live.llm_timeout_seconds)

    def _messages(self, task: TaskContext) -> list[dict[str, str]]:
        prompt = task.payload.get("prompt")
        user = prompt if isinstance(prompt, str) else json.dumps(task.payload)
        system = task.payload.get("system_prompt") or SYSTEM_PROMPTS.get(task.agent_type, "You are a helpful agent.")
        return [{"role": "system", "content": str(system)}, {"role": "user", "content": user}]

    async def run(self, task: TaskContext) -> dict[str, Any]:
        body = {
            "model": task.payload.get("model", self._model),
            "messages": self._messages(task),
            "max_tokens": self._max_tokens,
        }
        try:
            async with self._session.post(self._url, json=body, timeout=self._timeout) as response:
                text = await response.text()
                if response.status == 429 or response.status >= 500:
                    raise HandlerError(f"model endpoint answered {response.status}: {text[:200]}", retryable=True)
                if response.status >= 400:
                    raise HandlerError(
                        f"model endpoint refused the request ({response.status}): {text[:200]}",
                        retryable=False,
                    )
                data = json.loads(text)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise HandlerError(f"model endpoint unreachable: {exc!r}", retryable=True) from exc
        except json.JSONDecodeError as exc:
            raise HandlerError("model endpoint returned invalid JSON", retryable=True) from exc
        try:
            content = data["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError) as exc:
            raise HandlerError("model response has no choices[0].message.content", retryable=False) from exc
        result: dict[str, Any] = {
            "handler": "llm",
            "model": data.get("model", body["model"]),
            "content": content,
        }
        if isinstance(data.get("usage"), dict):
            result["usage"] = data["usage"]
        return result

    async def close(self) -> None:
        await self._session.close()
