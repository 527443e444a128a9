"""One typed settings object per process kind, read from AI_AGENTS_* environment variables.

Each kind's settings are split in two. The `*Live` models hold what a running process applies without a
restart (docs/configuration.md): their values at start come from the environment like every other setting,
and the live configuration file (`config_file`, ai_agents.live) overrides them while the process runs. The
`*Settings` classes add what only a restart can change (ports, the database, identity, the handler kind) and
inherit the live fields, so each constraint is declared once and applies to both sources.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ai_agents.domain import AGENT_TYPES

_ENV = SettingsConfigDict(env_prefix="AI_AGENTS_", extra="ignore", frozen=True)
# A live file with an unknown key is refused: a typo must not pass for a change that was applied.
_LIVE = ConfigDict(extra="forbid", frozen=True)
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class CommonLive(BaseModel):
    """Live settings of every process."""

    model_config = _LIVE

    log_level: str = "INFO"

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        level = value.upper()
        if level not in _LOG_LEVELS:
            raise ValueError(f"unknown log level {value!r}; expected one of {', '.join(_LOG_LEVELS)}")
        return level


class OrchestratorLive(CommonLive):
    """Live settings of an orchestrator: leases, retries, payload limits, background intervals."""

    # A lease lasts this long unless a heartbeat extends it (new leases and extensions use the new value).
    lease_seconds: int = Field(30, ge=1)
    # Sent to agents when they register and with every heartbeat answer.
    heartbeat_interval_seconds: int = Field(10, ge=1)
    # Stale agents are deregistered (their allocations released) after this long.
    agent_sweep_seconds: int = Field(600, ge=1)
    default_max_attempts: int = Field(3, ge=1, le=100)
    # Base of the exponential backoff before a failed attempt is retried.
    retry_backoff_seconds: float = Field(1.0, ge=0)
    max_payload_bytes: int = Field(256 * 1024, ge=16)
    # A ListTasks/ListAgents page stops before its rows' stored size passes this many bytes (always at least
    # one row); capped at a quarter of max_message_bytes, because protobuf can encode a JSON payload of small
    # numbers in up to ~3.7 times its text size and a gRPC page must stay sendable.
    list_page_max_bytes: int = Field(1024 * 1024, ge=1024)
    # Deepest nesting of objects and arrays in a payload, result or message body; 32 is the most a
    # protobuf parser decodes inside a LeaseTasksResponse (see orchestrator/validation.py).
    max_payload_depth: int = Field(32, ge=1, le=32)
    # How often expired leases are returned to the queue and gauges refreshed.
    maintenance_interval_seconds: float = Field(1.0, gt=0)
    gauge_refresh_seconds: float = Field(5.0, gt=0)
    # A chain's budget (follow-ups handing work on, store/follow_ups.py): how many steps after its first task a
    # follow-up may sit, and how many tasks the chain may hold in all; a completion past either is refused.
    max_chain_depth: int = Field(32, ge=1)
    max_chain_tasks: int = Field(1000, ge=2)


class AgentLive(CommonLive):
    """Live settings of an agent: how many tasks it runs at once and how its handler behaves."""

    # Used only until the orchestrator names its own interval (at registration and in every heartbeat answer).
    heartbeat_interval_seconds: int = Field(10, ge=1)
    concurrency: int = Field(4, ge=1, le=1024)
    lease_wait_seconds: int = Field(10, ge=0, le=60)
    simulate_latency_ms: float = Field(50.0, ge=0)
    simulate_failure_rate: float = Field(0.0, ge=0, le=1)
    llm_model: str = Field("gpt-4o-mini", min_length=1)
    llm_timeout_seconds: float = Field(60.0, gt=0)
    llm_max_tokens: int = Field(1024, ge=1)


class ChaosMonkeyLive(CommonLive):
    """Live settings of the chaos monkey: how often and how hard it strikes, or whether only pretending."""

    chaos_interval_seconds: float = Field(60.0, gt=0)
    chaos_dry_run: bool = False
    chaos_max_deletions_per_run: int = Field(1, ge=1)


class CommonSettings(BaseSettings, CommonLive):
    """What every process has: its four ports, logging and the API token."""

    model_config = _ENV

    host: str = "0.0.0.0"
    http_port: int = Field(8080, ge=0, le=65535)
    grpc_port: int = Field(9090, ge=0, le=65535)
    metrics_port: int = Field(9091, ge=0, le=65535)
    health_port: int = Field(8081, ge=0, le=65535)
    log_format: Literal["json", "text"] = "json"
    # The live configuration file (a ConfigMap key mounted as a volume, or `--config`): read at start, then
    # watched; unset, the live settings keep their values from the environment.
    config_file: Path | None = None
    # How often the live file is re-read (SIGHUP re-reads it at once).
    config_poll_seconds: float = Field(2.0, gt=0)
    # Required as `Authorization: Bearer <token>` on the gRPC and HTTP APIs when set.
    api_token: SecretStr | None = None
    # Largest gRPC message and HTTP body accepted, in bytes.
    max_message_bytes: int = Field(4 * 1024 * 1024, ge=1024)
    # Seconds in-flight requests get to finish on SIGTERM.
    shutdown_grace_seconds: float = Field(20.0, ge=0)
    # HTTP servers (API, health, metrics): a request's headers must arrive within this many seconds of its
    # first byte (or of the connection opening), else the connection is closed (slow-header clients).
    http_header_timeout_seconds: float = Field(10.0, gt=0)
    # A request body must arrive whole within this many seconds of the headers, else 408.
    http_body_timeout_seconds: float = Field(30.0, gt=0)
    # An idle keep-alive connection is closed after this many seconds without a new request. Longer than the
    # mesh's 300 s upstream idleTimeout, so the proxy retires pooled connections before the server closes them.
    http_keepalive_timeout_seconds: float = Field(310.0, gt=0)
    # Open connections per HTTP server; beyond it new connections get 503 and are closed at once. Keep it
    # well under the process's open-file limit so health, metrics and the database keep their descriptors.
    http_max_connections: int = Field(512, ge=1)


class OrchestratorSettings(CommonSettings, OrchestratorLive):
    model_config = _ENV

    database_url: str = "postgresql://postgres@127.0.0.1:5432/postgres"
    database_pool_min: int = Field(2, ge=1)
    database_pool_max: int = Field(20, ge=1)
    # Concurrent submits, completions and heartbeats share one statement (and one WAL flush) each; off: one
    # statement per call. Same guarantees either way (ai_agents/group_commit.py).
    database_group_commit: bool = True
    # How long start-up keeps retrying an unreachable database before the process gives up.
    database_connect_timeout_seconds: float = Field(60.0, ge=0)
    orchestrator_id: str = Field(default_factory=socket.gethostname)
    # Processes serving this orchestrator's ports together (orchestrator/processes.py): one event loop uses about
    # one core, so a pod given more than one core serves more with more. They share out the database pool sizes above.
    serving_processes: int = Field(1, ge=1, le=16)
    # An agent silent for this long counts as stale; its leases run out on their own. Not live: the agent
    # store is built with it at start.
    agent_stale_seconds: int = Field(35, ge=1)
    # How agents prove who they are on the agent RPCs (docs/contracts.md, "Agent identity"): `local` checks an
    # HMAC credential made with agent_identity_secret, `kubernetes` a projected service-account token (TokenReview),
    # `none` trusts the agent_id in the request (development against an existing database only).
    agent_identity: Literal["none", "local", "kubernetes"] = "none"
    agent_identity_secret: SecretStr | None = None
    # kubernetes: {service account name: agent type}, in agent_namespace (default: the orchestrator's own).
    agent_service_accounts: dict[str, str] = Field(default_factory=dict)
    agent_namespace: str | None = None
    # kubernetes: the audience agents' projected tokens are issued for.
    agent_token_audience: str = "ai-agents"

    @model_validator(mode="after")
    def _identity_configured(self) -> OrchestratorSettings:
        if self.agent_identity == "local" and (
            self.agent_identity_secret is None or len(self.agent_identity_secret.get_secret_value()) < 32
        ):
            raise ValueError("agent_identity 'local' needs AI_AGENTS_AGENT_IDENTITY_SECRET of at least 32 characters")
        if self.agent_identity == "kubernetes":
            if not self.agent_service_accounts:
                raise ValueError("agent_identity 'kubernetes' needs AI_AGENTS_AGENT_SERVICE_ACCOUNTS")
            unknown = sorted(set(self.agent_service_accounts.values()) - set(AGENT_TYPES))
            if unknown:
                raise ValueError(f"AI_AGENTS_AGENT_SERVICE_ACCOUNTS maps to unknown agent types {unknown}")
        return self


class AgentSettings(CommonSettings, AgentLive):
    model_config = _ENV

    agent_type: str
    agent_id: str = Field(default_factory=socket.gethostname)
    orchestrator_target: str = "dns:///127.0.0.1:9090"
    # gRPC channels to the orchestrators, each with its own connection to every orchestrator; calls go to the
    # channel with the fewest in flight. One suits an agent's few concurrent calls; more spread a busy process
    # over more HTTP/2 connections. Not live: the channels are opened at start.
    orchestrator_channels: int = Field(1, ge=1, le=64)
    # host:port others reach this agent at (informational, shown in the registry).
    agent_address: str = ""
    handler: Literal["simulate", "llm"] = "simulate"
    llm_base_url: str = "http://127.0.0.1:11434/v1"
    llm_api_key: SecretStr | None = None
    # This agent's identity credential, sent on every call (orchestrator agent_identity `local`), or a file
    # re-read when it changes (`kubernetes`: the projected service-account token the kubelet rotates).
    agent_credential: SecretStr | None = None
    agent_credential_file: Path | None = None

    @field_validator("agent_type")
    @classmethod
    def _known_type(cls, value: str) -> str:
        if value not in AGENT_TYPES:
            raise ValueError(f"unknown agent type {value!r}; expected one of {', '.join(AGENT_TYPES)}")
        return value


class ChaosMonkeySettings(CommonSettings, ChaosMonkeyLive):
    model_config = _ENV

    chaos_mode: Literal["kubernetes", "local"] = "kubernetes"
    chaos_namespace: str = "default"
    chaos_label_selector: str = "app.kubernetes.io/name=agent"
    # Pods carrying this label with value "true" are never touched.
    chaos_exclude_label: str = "ai-agents.io/chaos-exempt"
    # Bounds the run: stop after this many rounds (0 = until stopped).
    chaos_max_rounds: int = Field(0, ge=0)
