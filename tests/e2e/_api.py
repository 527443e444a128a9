"""The orchestrator's HTTP JSON API (`/v1/...`) as the tests use it, through a port-forward."""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any

import requests

FINAL_STATES = frozenset({"succeeded", "failed", "cancelled", "dead_letter"})
MAX_PAGE_SIZE = 1000


@dataclass
class OrchestratorApi:
    base_url: str
    token: str | None
    timeout_sec: float = 10.0

    def __post_init__(self) -> None:
        self._session = requests.Session()
        if self.token:
            self._session.headers["Authorization"] = f"Bearer {self.token}"

    def _get(self, path: str, **params: Any) -> Any:
        response = self._session.get(self.base_url + path, params=params, timeout=self.timeout_sec)
        response.raise_for_status()
        return response.json()

    def status(self) -> dict[str, Any]:
        return self._get("/v1/status")

    def queue(self, agent_type: str) -> dict[str, Any]:
        """Queued and leased tasks of one type, counted now (what KEDA's queue trigger reads)."""
        return self._get("/v1/queue", agent_type=agent_type)

    def submit(
        self,
        agent_type: str,
        payload: dict[str, Any] | None = None,
        *,
        idempotency_key: str | None = None,
        attempts: int = 3,
        **fields: Any,
    ) -> dict[str, Any]:
        """Submit with an idempotency key and retry transport errors with the same key (safe to repeat).

        `fields` are further fields of the request body (`max_attempts`, `priority`)."""
        key = idempotency_key or f"e2e-{uuid.uuid4()}"
        body = {"agent_type": agent_type, "payload": payload or {}, "idempotency_key": key, **fields}
        last: Exception | None = None
        for _ in range(attempts):
            try:
                response = self._session.post(self.base_url + "/v1/tasks", json=body, timeout=self.timeout_sec)
                if response.status_code in (200, 201):
                    return response.json()
                if response.status_code < 500:
                    response.raise_for_status()
                last = requests.HTTPError(f"{response.status_code}: {response.text[:200]}")
            except (requests.ConnectionError, requests.Timeout) as exc:
                last = exc
        assert last is not None
        raise last

    def cancel(self, task_id: str) -> dict[str, Any]:
        response = self._session.post(f"{self.base_url}/v1/tasks/{task_id}:cancel", timeout=self.timeout_sec)
        response.raise_for_status()
        return response.json()

    def task(self, task_id: str) -> dict[str, Any]:
        return self._get(f"/v1/tasks/{task_id}")

    def list_tasks(self, *, agent_type: str | None = None, state: str | None = None) -> list[dict[str, Any]]:
        """Every task (all pages)."""
        return self._all_pages("/v1/tasks", "tasks", agent_type=agent_type, state=state)

    def list_agents(self, *, agent_type: str | None = None) -> list[dict[str, Any]]:
        return self._all_pages("/v1/agents", "agents", agent_type=agent_type)

    def _all_pages(self, path: str, key: str, **filters: str | None) -> list[dict[str, Any]]:
        """The items under `key` of every page of a list route, following next_page_token."""
        items: list[dict[str, Any]] = []
        params: dict[str, Any] = {"page_size": MAX_PAGE_SIZE, **{k: v for k, v in filters.items() if v}}
        while True:
            page = self._get(path, **params)
            items.extend(page[key])
            params["page_token"] = page.get("next_page_token") or ""
            if not params["page_token"]:
                return items


@dataclass(frozen=True)
class Ledger:
    """What the client was told (acknowledged submissions) against what the server holds."""

    acknowledged: dict[str, str]  # idempotency key -> task id

    def check(self, tasks: list[dict[str, Any]]) -> dict[str, list[str]]:
        """Problems by kind: lost (acknowledged, absent), unfinished, duplicated (one key, several tasks),
        id_mismatch (key now maps to another task)."""
        by_key: dict[str, list[dict[str, Any]]] = {}
        for task in tasks:
            if task.get("idempotency_key"):
                by_key.setdefault(task["idempotency_key"], []).append(task)
        by_id = {t["task_id"]: t for t in tasks}
        problems: dict[str, list[str]] = {"lost": [], "unfinished": [], "duplicated": [], "id_mismatch": []}
        for key, task_id in self.acknowledged.items():
            same_key = by_key.get(key, [])
            if len(same_key) > 1:
                problems["duplicated"].append(f"{key}: {[t['task_id'] for t in same_key]}")
            task = by_id.get(task_id)
            if task is None:
                problems["lost" if not same_key else "id_mismatch"].append(f"{key} -> {task_id}")
            elif task["state"] not in FINAL_STATES:
                problems["unfinished"].append(f"{task_id} ({task['state']})")
        return problems

    @staticmethod
    def states(tasks: list[dict[str, Any]]) -> Counter[str]:
        return Counter(t["state"] for t in tasks)
