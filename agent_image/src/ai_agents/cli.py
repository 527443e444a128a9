"""The `ai-agents` command: run a process (orchestrator, agent, chaos-monkey), drive the API, run a local fleet."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ai_agents import __version__
from ai_agents.domain import AGENT_TYPES, TaskState

DEFAULT_LOCAL_AGENTS = {
    "coding": 2,
    "testing": 2,
    "security": 1,
    "compliance": 1,
    "documentation": 1,
    "discovery": 1,
}


# ---- long-running processes (each assembled in its own module, run through ai_agents.lifecycle) ----------


def _use_config(args: argparse.Namespace) -> None:
    """`--config FILE`: the live configuration file, as AI_AGENTS_CONFIG_FILE (which the settings read)."""
    # SIGHUP means "re-read the file" once the event loop runs; until then (imports, settings) it must not end
    # the process, as its default would (`local reload` right after a restart).
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    if args.config:
        os.environ["AI_AGENTS_CONFIG_FILE"] = str(_live_config_path(args.config))


def _live_config_path(path: str) -> Path:
    """An absolute path to a readable live file; a file that does not validate is refused here, before anything runs.

    Absolute, because the processes may run elsewhere (`local up` starts them with its own working directory),
    but with its symlinks kept: in a ConfigMap volume the path leads through `..data`, which the kubelet swaps,
    and a resolved path would stay on the old, deleted file.
    """
    from ai_agents.live import InvalidLiveConfig, parse_live_document

    resolved = Path(os.path.abspath(path))
    try:
        parse_live_document(resolved.read_text())
    except OSError as exc:
        raise SystemExit(f"--config {path}: {exc.strerror or exc}") from None
    except InvalidLiveConfig as exc:
        raise SystemExit(f"--config {path}: {exc}") from None
    return resolved


def cmd_orchestrator(args: argparse.Namespace) -> int:
    from ai_agents.orchestrator.processes import main

    _use_config(args)
    return main()


def cmd_agent(args: argparse.Namespace) -> int:
    from ai_agents.agent import main

    _use_config(args)
    return main()


def cmd_chaos_monkey(args: argparse.Namespace) -> int:
    from ai_agents.chaos import main

    _use_config(args)
    return main()


def cmd_check_health(args: argparse.Namespace) -> int:
    try:
        with urllib.request.urlopen(args.url, timeout=args.timeout) as response:
            print(f"{args.url}: {response.status}")
            return 0 if response.status == 200 else 1
    except (urllib.error.URLError, OSError) as exc:
        print(f"{args.url}: {exc}", file=sys.stderr)
        return 1


# ---- local fleet -----------------------------------------------------------------------------------------


def _parse_agent_counts(values: list[str] | None, per_type: int | None) -> dict[str, int]:
    counts = {t: per_type for t in AGENT_TYPES} if per_type is not None else dict(DEFAULT_LOCAL_AGENTS)
    for item in values or []:
        name, _, number = item.partition("=")
        if name not in AGENT_TYPES or not number.isdigit():
            raise SystemExit(f"--agents expects TYPE=N with TYPE one of {', '.join(AGENT_TYPES)}; got {item!r}")
        counts[name] = int(number)
    return {t: n for t, n in counts.items() if n > 0}


def cmd_local_up(args: argparse.Namespace) -> int:
    from ai_agents.local.fleet import Fleet, FleetState
    from ai_agents.local.postgres import FAST_WARNING
    from ai_agents.observability.logs import configure_logging

    state_dir = Path(args.state_dir).resolve()
    if args.fast and args.dsn:
        raise SystemExit("--fast tunes the throwaway PostgreSQL; it cannot apply to a database given by --dsn")
    agents = _parse_agent_counts(args.agents, args.agents_per_type)
    if args.fast:
        print(f"WARNING: {FAST_WARNING}", file=sys.stderr, flush=True)
    if args.detach:
        if FleetState.load(state_dir) is not None:
            raise SystemExit(f"a local fleet is already recorded in {state_dir}; run `ai-agents local down`")
        return _start_detached_supervisor(args, state_dir)
    # The supervisor's restarts are logged: as JSON into logs/supervisor.log when detached, as text on a terminal.
    configure_logging(component="local-fleet", level="INFO", fmt="json" if args.detached_supervisor else "text")
    fleet = Fleet(state_dir)
    # The flags give the start values; the live file, when given, overrides them while the fleet runs.
    agent_env = {
        "AI_AGENTS_HANDLER": args.handler,
        "AI_AGENTS_SIMULATE_LATENCY_MS": str(args.latency_ms),
        "AI_AGENTS_SIMULATE_FAILURE_RATE": str(args.failure_rate),
        "AI_AGENTS_LOG_FORMAT": "json",
    }
    orchestrator_env: dict[str, str] = {}
    if args.config:
        config_env = {"AI_AGENTS_CONFIG_FILE": str(_live_config_path(args.config))}
        agent_env.update(config_env)
        orchestrator_env.update(config_env)

    # Python-level handlers (unlike a blocked signal mask) are not inherited by the processes the fleet starts,
    # and they turn SIGTERM into the same orderly stop as Ctrl-C, also while the fleet is still starting.
    def request_stop(signum: int, _frame: object) -> None:
        raise _StopRequested(signum)

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, request_stop)
    try:
        state = fleet.up(
            dsn=args.dsn,
            orchestrators=args.orchestrators,
            agents=agents,
            agent_env=agent_env,
            orchestrator_env=orchestrator_env,
            fast=args.fast,
        )
        supervisor = fleet.supervisor(state)
        # From here a signal only asks the loop to end, so it never lands between a restart and its record.
        stop_requested: list[int] = []
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda signum, _frame: stop_requested.append(signum))
        try:
            print(json.dumps(state.summary()), flush=True)
        except BrokenPipeError:
            # `local up --detach` went away before reading it: nobody knows this fleet exists, so stop it.
            stop_requested.append(signal.SIGPIPE)
        if args.detached_supervisor:
            # stdout was the pipe to `local up --detach`, which exits after that one line.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
        print("local fleet running; processes that exit are restarted; Ctrl-C stops it", file=sys.stderr, flush=True)
        while not stop_requested:
            supervisor.poll()
            time.sleep(0.5)  # a kubelet-like poll: restarts are delayed by back-off anyway
    except _StopRequested:
        pass
    # fleet.up() already cleaned up if it was interrupted; down() is a no-op then.
    fleet.down()
    return 0


def _start_detached_supervisor(args: argparse.Namespace, state_dir: Path) -> int:
    """Run `local up` in the background as the fleet's supervisor; return once it printed the fleet's JSON line.

    The supervisor must outlive this command to restart processes that exit, so it is a process of its own
    session; `local down` stops it (and with it the fleet).
    """
    log_path = state_dir / "logs" / "supervisor.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        # PostgreSQL then runs as an unprivileged user, who must be able to traverse into its data directory.
        state_dir.chmod(state_dir.stat().st_mode | 0o011)
    argv = [
        *("local", "up", "--detached-supervisor", "--state-dir", str(state_dir)),
        *("--orchestrators", str(args.orchestrators), "--handler", args.handler),
        *("--latency-ms", str(args.latency_ms), "--failure-rate", str(args.failure_rate)),
        *(("--dsn", args.dsn) if args.dsn else ()),
        *(("--agents-per-type", str(args.agents_per_type)) if args.agents_per_type is not None else ()),
        *(item for spec in args.agents or () for item in ("--agents", spec)),
        *(("--fast",) if args.fast else ()),
        *(("--config", str(_live_config_path(args.config))) if args.config else ()),
    ]
    log_start = log_path.stat().st_size if log_path.exists() else 0
    with log_path.open("ab") as log_file:
        supervisor = subprocess.Popen(
            [sys.executable, "-m", "ai_agents", *argv],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=log_file,
            start_new_session=True,
        )
    assert supervisor.stdout is not None
    try:
        summary = supervisor.stdout.readline()
    except KeyboardInterrupt:
        supervisor.terminate()  # it stops whatever it started
        supervisor.wait(timeout=180)
        raise
    supervisor.stdout.close()
    if not summary:
        code = supervisor.wait(timeout=180)
        with log_path.open("rb") as log_file:
            log_file.seek(log_start)
            sys.stderr.write(log_file.read().decode(errors="replace"))
        return code or 1
    sys.stdout.write(summary.decode())
    sys.stdout.flush()
    return 0


class _StopRequested(Exception):
    """SIGINT or SIGTERM arrived while `local up` runs in the foreground."""


def cmd_local_reload(args: argparse.Namespace) -> int:
    from ai_agents.local.fleet import Fleet

    signalled = Fleet(Path(args.state_dir).resolve()).reload()
    if signalled is None:
        print("no local fleet recorded")
        return 1
    print(f"asked {signalled} processes to re-read their live configuration (SIGHUP)")
    return 0


def cmd_local_down(args: argparse.Namespace) -> int:
    from ai_agents.local.fleet import Fleet

    state = Fleet(Path(args.state_dir).resolve()).down()
    print("stopped" if state else "no local fleet recorded")
    return 0


# ---- API commands ----------------------------------------------------------------------------------------


def _default_target() -> str:
    if target := os.environ.get("AI_AGENTS_ORCHESTRATOR_TARGET"):
        return target
    from ai_agents.local.fleet import FleetState, default_state_dir

    state = FleetState.load(default_state_dir())
    return state.grpc_target() if state else "127.0.0.1:9090"


def _client_command(
    run: Callable[[Any, argparse.Namespace], Awaitable[int]],
) -> Callable[[argparse.Namespace], int]:
    def command(args: argparse.Namespace) -> int:
        # Here, not at the top: `ai-agents orchestrator` with serving processes starts without gRPC in the parent.
        import grpc

        from ai_agents.client import OrchestratorClient

        async def main() -> int:
            async with await OrchestratorClient.connect(
                args.target or _default_target(),
                token=os.environ.get("AI_AGENTS_API_TOKEN") or None,
                timeout=args.timeout,
            ) as client:
                return await run(client, args)

        try:
            return asyncio.run(main())
        except grpc.aio.AioRpcError as exc:
            print(json.dumps({"error": {"code": exc.code().name, "message": exc.details()}}), file=sys.stderr)
            return 2

    return command


def _emit_task(task: Any) -> None:
    """A task exactly as the HTTP API answers it (ai_agents.api_json), so scripts can use either."""
    from ai_agents import api_json

    print(api_json.dumps(api_json.task_json_of_message(task)))


async def _submit(client: Any, args: argparse.Namespace) -> int:
    try:
        payload = json.loads(args.payload)
    except json.JSONDecodeError as exc:
        raise SystemExit(f"--payload is not JSON: {exc}") from exc
    response = await client.submit_task(
        args.agent_type, payload, idempotency_key=args.idempotency_key, priority=args.priority
    )
    if not args.wait:
        _emit_task(response.task)
        return 0
    return await _watch(client, [response.task.task_id], args.wait_timeout, quiet=args.quiet, chain=args.chain)


async def _get(client: Any, args: argparse.Namespace) -> int:
    _emit_task(await client.get_task(args.task_id))
    return 0


async def _cancel(client: Any, args: argparse.Namespace) -> int:
    _emit_task(await client.cancel_task(args.task_id))
    return 0


async def _list(client: Any, args: argparse.Namespace) -> int:
    from ai_agents import api_json

    page = await client.list_tasks(
        agent_type=args.agent_type,
        state=args.state,
        page_size=args.page_size,
        page_token=args.page_token or "",
    )
    tasks = [api_json.task_json_of_message(t) for t in page.tasks]
    print(api_json.dumps(api_json.page_json("tasks", tasks, page.next_page_token)))
    return 0


async def _agents(client: Any, args: argparse.Namespace) -> int:
    from ai_agents import api_json

    agents: list[dict[str, Any]] = []
    token = ""
    while True:
        page = await client.list_agents(agent_type=args.agent_type, page_size=1000, page_token=token)
        agents.extend(api_json.agent_json_of_message(a) for a in page.agents)
        token = page.next_page_token
        if not token:
            break
    if args.json:
        print(api_json.dumps(agents))
        return 0
    from rich.console import Console
    from rich.table import Table

    counts: dict[str, dict[str, int]] = {}
    for agent in agents:
        counts.setdefault(agent["agent_type"], {}).setdefault(agent["state"], 0)
        counts[agent["agent_type"]][agent["state"]] += 1
    table = Table(title=f"{len(agents)} agents")
    for column in ("type", "active", "draining", "stale"):
        table.add_column(column)
    for agent_type in AGENT_TYPES:
        c = counts.get(agent_type, {})
        table.add_row(agent_type, str(c.get("active", 0)), str(c.get("draining", 0)), str(c.get("stale", 0)))
    Console().print(table)
    return 0


async def _status(client: Any, args: argparse.Namespace) -> int:
    response = await client.status()
    if args.json:
        from ai_agents.convert import message_to_dict

        print(json.dumps(message_to_dict(response), indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    from ai_agents.convert import AGENT_TYPE

    table = Table(title=f"ai-agents {response.version} (database {'ok' if response.database_ok else 'DOWN'})")
    for column in ("type", "queued", "leased", "succeeded", "failed", "dead letter", "agents", "stale"):
        table.add_column(column, justify="right" if column != "type" else "left")
    for t in response.types:
        table.add_row(
            AGENT_TYPE.to_str(t.agent_type),
            str(t.queued),
            str(t.leased),
            str(t.succeeded),
            str(t.failed),
            str(t.dead_letter),
            str(t.agents_active),
            str(t.agents_stale),
        )
    Console().print(table)
    return 0


async def _watch(client: Any, task_ids: list[str], timeout: float, *, quiet: bool = False, chain: bool = True) -> int:
    """Show progress until every task is final, with `chain` also every follow-up their completions create
    (each under the task that handed it on); print each task's JSON in chain order; exit 0 only if all succeeded.
    """
    from rich.progress import BarColumn, Progress, TextColumn

    from ai_agents.convert import AGENT_TYPE, TASK_STATE

    final = {state.value for state in TaskState if state.terminal}
    states: dict[str, str] = {}
    depth = dict.fromkeys(task_ids, 0)
    children: dict[str, list[str]] = {}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[state]}"),
        disable=quiet,
        transient=False,
    ) as progress:
        bars = {tid: progress.add_task(tid[:8], total=1.0, state="?") for tid in task_ids}
        while loop.time() < deadline:
            for task_id in list(bars):
                if states.get(task_id) in final:
                    continue
                task = await client.get_task(task_id)
                states[task_id] = TASK_STATE.to_str(task.state)
                indent = "  " * depth[task_id] + ("└ " if depth[task_id] else "")
                label = f"{indent}{task_id[:8]} {AGENT_TYPE.to_str(task.agent_type)}"
                progress.update(bars[task_id], description=label, completed=task.progress, state=states[task_id])
                if chain and states[task_id] in final and task.child_task_ids:
                    # Set once, by the completion that created them: the chain's next links.
                    children[task_id] = list(task.child_task_ids)
                    for child in task.child_task_ids:
                        if child not in bars:
                            depth[child] = depth[task_id] + 1
                            bars[child] = progress.add_task(child[:8], total=1.0, state="?")
            if all(states.get(t) in final for t in bars):
                break
            await asyncio.sleep(0.2)
    for task_id in _chain_order(task_ids, children):
        _emit_task(await client.get_task(task_id))
    if not all(states.get(t) in final for t in bars):
        print(f"timed out after {timeout:.0f}s", file=sys.stderr)
        return 3
    return 0 if all(states[t] == TaskState.SUCCEEDED for t in bars) else 1


def _chain_order(roots: list[str], children: dict[str, list[str]]) -> list[str]:
    """Each task followed by its follow-ups (depth first), each task once."""
    order: list[str] = []
    pending = list(reversed(roots))
    while pending:
        task_id = pending.pop()
        if task_id in order:
            continue
        order.append(task_id)
        pending.extend(reversed(children.get(task_id, [])))
    return order


async def _watch_cmd(client: Any, args: argparse.Namespace) -> int:
    return await _watch(client, args.task_ids, args.timeout_total, quiet=args.quiet, chain=args.chain)


# ---- parser ----------------------------------------------------------------------------------------------

_NO_CHAIN_HELP = "wait only for the named task(s), not for the follow-ups their completions create"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ai-agents", description=__doc__)
    parser.add_argument("--version", action="version", version=f"ai-agents {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    # The processes that watch a live configuration file (docs/configuration.md).
    live = argparse.ArgumentParser(add_help=False)
    live.add_argument(
        "--config",
        metavar="FILE",
        help="live configuration file (AI_AGENTS_CONFIG_FILE): watched, applied without a restart, SIGHUP re-reads",
    )
    sub.add_parser(
        "orchestrator", parents=[live], help="run an orchestrator (settings from AI_AGENTS_* env)"
    ).set_defaults(func=cmd_orchestrator)
    sub.add_parser(
        "agent", parents=[live], help="run an agent (AI_AGENTS_AGENT_TYPE and other settings from env)"
    ).set_defaults(func=cmd_agent)
    sub.add_parser("chaos-monkey", parents=[live], help="delete random agent pods or kill local agents").set_defaults(
        func=cmd_chaos_monkey
    )
    health = sub.add_parser("check-health", help="exit 0 when URL answers 200")
    health.add_argument("url")
    health.add_argument("--timeout", type=float, default=5.0)
    health.set_defaults(func=cmd_check_health)

    local = sub.add_parser("local", help="run the fleet as local processes").add_subparsers(
        dest="local_command", required=True
    )
    up = local.add_parser("up", parents=[live], help="start PostgreSQL (unless --dsn), orchestrators and agents")
    up.add_argument("--dsn", help="use this PostgreSQL instead of starting a throwaway one")
    up.add_argument("--orchestrators", type=int, default=2)
    up.add_argument("--agents", action="append", metavar="TYPE=N", help="agents of one type (repeatable)")
    up.add_argument("--agents-per-type", type=int, help="the same number of agents for every type")
    up.add_argument("--handler", choices=["simulate", "llm"], default="simulate")
    up.add_argument("--latency-ms", type=float, default=50.0)
    up.add_argument("--failure-rate", type=float, default=0.0)
    up.add_argument(
        "--detach",
        action="store_true",
        help="return once the fleet is ready; a background supervisor keeps restarting what exits",
    )
    up.add_argument(
        "--fast",
        action="store_true",
        help="run the throwaway PostgreSQL without fsync/synchronous_commit/full_page_writes: faster, "
        "but a crash can lose acknowledged tasks",
    )
    # The background process `--detach` starts: `local up` whose stdout is a pipe read for one line.
    up.add_argument("--detached-supervisor", action="store_true", help=argparse.SUPPRESS)
    down = local.add_parser("down", help="stop the local fleet")
    reload = local.add_parser("reload", help="make every process re-read its live configuration now (SIGHUP)")
    for p in (up, down, reload):
        p.add_argument("--state-dir", default=os.environ.get("AI_AGENTS_LOCAL_DIR", ".local-fleet"))
    up.set_defaults(func=cmd_local_up)
    down.set_defaults(func=cmd_local_down)
    reload.set_defaults(func=cmd_local_reload)

    def api(
        name: str, help_text: str, run: Callable[[Any, argparse.Namespace], Awaitable[int]]
    ) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--target", help="orchestrator gRPC target (default: env, then the local fleet)")
        p.add_argument("--timeout", type=float, default=10.0, help="deadline of each call in seconds")
        p.set_defaults(func=_client_command(run))
        return p

    submit = api("submit", "submit a task", _submit)
    submit.add_argument("agent_type", choices=AGENT_TYPES)
    submit.add_argument("--payload", default="{}", help="JSON object")
    submit.add_argument("--idempotency-key")
    submit.add_argument("--priority", type=int, default=0)
    submit.add_argument("--wait", action="store_true", help="watch until the task and its follow-ups are final")
    submit.add_argument("--wait-timeout", type=float, default=300.0)
    submit.add_argument("--quiet", action="store_true")
    submit.add_argument("--no-chain", dest="chain", action="store_false", help=_NO_CHAIN_HELP)
    api("get", "show a task", _get).add_argument("task_id")
    api("cancel", "cancel a task", _cancel).add_argument("task_id")
    list_cmd = api("list", "list tasks", _list)
    list_cmd.add_argument("--agent-type", choices=AGENT_TYPES)
    list_cmd.add_argument("--state")
    list_cmd.add_argument("--page-size", type=int, default=50)
    list_cmd.add_argument("--page-token")
    agents = api("agents", "registered agents by type", _agents)
    agents.add_argument("--agent-type", choices=AGENT_TYPES)
    agents.add_argument("--json", action="store_true")
    status = api("status", "queue and fleet summary", _status)
    status.add_argument("--json", action="store_true")
    watch = api("watch", "follow tasks and the follow-ups they hand on until all are final", _watch_cmd)
    watch.add_argument("task_ids", nargs="+")
    watch.add_argument("--timeout-total", type=float, default=300.0)
    watch.add_argument("--quiet", action="store_true")
    watch.add_argument("--no-chain", dest="chain", action="store_false", help=_NO_CHAIN_HELP)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ValidationError as exc:
        print(f"invalid settings: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
