"""`bench-results/report.html`: one self-contained page (inline CSS and SVG, no scripts, nothing fetched) with the
targets, the peer side by side, throughput and latency over time per task phase, and where the CPU went."""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from typing import Any

# Task phases with a timeline, in the order they run; the peer is drawn beside the runtime's e2e phase.
PHASES = (
    ("e2e_throughput", "End to end, as fast as possible"),
    ("fixed_rate", "Fixed submission rate"),
    ("http_rate", "HTTP POST /v1/tasks at a fixed rate"),
    ("many_agents", "1,000 agents at once"),
)
RUNTIME, PEER = "#1f6feb", "#d9480f"
CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:1120px;color:#1b1f24;padding:0 16px}
h1{font-size:22px;margin-bottom:4px}h2{font-size:17px;margin-top:32px;border-bottom:1px solid #d0d7de}
table{border-collapse:collapse;margin:8px 0}td,th{padding:3px 10px;border-bottom:1px solid #eaeef2;text-align:left}
th{background:#f6f8fa}.met{color:#1a7f37;font-weight:600}.missed{color:#cf222e;font-weight:600}
.charts{display:flex;flex-wrap:wrap;gap:16px}.muted{color:#57606a}.bar{display:inline-block;height:12px}
svg text{font:11px system-ui,sans-serif;fill:#57606a}
"""
CPU_COLORS = ("#1f6feb", "#8250df", "#1a7f37", "#bf8700", "#d9480f", "#57606a", "#afb8c1")


def _e(value: Any) -> str:
    return html.escape(str(value))


def _num(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return _e(value)


def _ticks(top: float, count: int = 4) -> list[float]:
    """Round tick values from 0 to at least `top`."""
    if top <= 0:
        return [0.0, 1.0]
    raw = top / count
    step = 10 ** math.floor(math.log10(raw))
    step *= next(m for m in (1, 2, 2.5, 5, 10) if m * step >= raw)
    return [i * step for i in range(math.ceil(top / step - 1e-9) + 1)]


def line_chart(
    title: str, unit: str, series: Sequence[tuple[str, str, Sequence[float], Sequence[float | None]]]
) -> str:
    """An SVG line chart: each series (label, colour, x seconds, y values; None leaves a gap)."""
    width, height, left, right, top, bottom = 520, 220, 52, 12, 26, 30
    xs = [x for _, _, sx, _ in series for x in sx]
    ys = [y for _, _, _, sy in series for y in sy if y is not None]
    if not xs or not ys:
        return f'<p class="muted">{_e(title)}: no data</p>'
    x_ticks, y_ticks = _ticks(max(xs)), _ticks(max(ys))
    x_max, y_max = x_ticks[-1], y_ticks[-1]

    def px(x: float) -> float:
        return left + (width - left - right) * x / x_max

    def py(y: float) -> float:
        return height - bottom - (height - top - bottom) * y / y_max

    parts = [f'<svg width="{width}" height="{height}" role="img" aria-label="{_e(title)}">']
    parts.append(f'<text x="{left}" y="14" style="font-weight:600;fill:#1b1f24">{_e(title)} ({_e(unit)})</text>')
    for y in y_ticks:
        parts.append(f'<line x1="{left}" x2="{width - right}" y1="{py(y):.1f}" y2="{py(y):.1f}" stroke="#eaeef2"/>')
        parts.append(f'<text x="{left - 6}" y="{py(y) + 4:.1f}" text-anchor="end">{y:g}</text>')
    for x in x_ticks:
        parts.append(f'<text x="{px(x):.1f}" y="{height - bottom + 16}" text-anchor="middle">{x:g}</text>')
    parts.append(f'<text x="{width - right}" y="{height - 2}" text-anchor="end">seconds from first submit</text>')
    for index, (label, colour, sx, sy) in enumerate(series):
        runs: list[list[str]] = [[]]
        for x, y in zip(sx, sy, strict=True):
            if y is None:
                runs.append([])
            else:
                runs[-1].append(f"{px(x):.1f},{py(y):.1f}")
        for run in runs:
            if len(run) == 1:
                cx, cy = run[0].split(",")
                parts.append(f'<circle cx="{cx}" cy="{cy}" r="2" fill="{colour}"/>')
            elif run:
                parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.6" points="{" ".join(run)}"/>')
        parts.append(
            f'<text x="{width - right - 4}" y="{top + 12 + 14 * index}" text-anchor="end" '
            f'style="fill:{colour}">{_e(label)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _timeline_series(label: str, colour: str, phase: dict[str, Any]) -> dict[str, list[Any]]:
    line = phase.get("timeline") or {}
    t = line.get("t", [])
    return {
        "rate": [(label, colour, t, line.get("completed_per_second", []))],
        "latency": [
            (f"{label} p50", colour, t, line.get("p50_ms", [])),
            (f"{label} p95", colour + "99", t, line.get("p95_ms", [])),
        ],
    }


def _phase_charts(report: dict[str, Any], key: str) -> str:
    phase = report.get(key)
    if not phase:
        return ""
    series = _timeline_series("ai-agents", RUNTIME, phase)
    peer = report.get("peer_celery") if key == "e2e_throughput" else None
    if peer:
        other = _timeline_series("Celery + Redis", PEER, peer)
        series = {name: series[name] + other[name] for name in series}
    return (
        '<div class="charts">'
        + line_chart("Tasks completed per second", "tasks/s", series["rate"])
        + line_chart("Submit to complete, tasks finishing then", "ms", series["latency"])
        + "</div>"
    )


def _cpu_split(cpu: dict[str, Any]) -> str:
    """Cores busy per process group, as a bar each (runqueue waits and the machine total left out)."""
    groups = [
        (k.removesuffix("_cores"), v)
        for k, v in cpu.items()
        if k.endswith("_cores") and k != "machine_cores" and "runqueue" not in k and isinstance(v, int | float)
    ]
    if not groups:
        return ""
    rows = []
    for index, (name, cores) in enumerate(groups):
        colour = CPU_COLORS[index % len(CPU_COLORS)]
        width = max(1, round(cores * 120))
        rows.append(
            f'<tr><td>{_e(name)}</td><td><span class="bar" style="width:{width}px;background:{colour}"></span> '
            f"{cores:.2f}</td></tr>"
        )
    return "<table><tr><th>CPU by process group</th><th>cores busy</th></tr>" + "".join(rows) + "</table>"


def _pcts(p: dict[str, Any] | None) -> str:
    if not p or p.get("p50") is None:
        return "-"
    return f"{p['p50']:.1f} / {p['p95']:.1f} / {p['p99']:.1f}"


def _targets(report: dict[str, Any]) -> str:
    rows = []
    for name, entry in report.get("targets", {}).items():
        met, measured = entry.get("met"), entry.get("measured")
        # CPU milliseconds and ratios are small numbers: one decimal would hide 0.414 against a goal of 0.15.
        digits = 3 if isinstance(measured, float) and abs(measured) < 10 else 1
        verdict = {True: '<span class="met">met</span>', False: '<span class="missed">missed</span>'}.get(met, "n/a")
        rows.append(
            f"<tr><td>{_e(name)}</td><td>{_e(entry.get('target'))}</td>"
            f"<td>{_num(measured, digits)}</td><td>{verdict}</td></tr>"
        )
    return "<table><tr><th>target</th><th>goal</th><th>measured</th><th></th></tr>" + "".join(rows) + "</table>"


def _peer(report: dict[str, Any]) -> str:
    cmp_ = report.get("peer_comparison")
    if not cmp_:
        return '<p class="muted">No peer in this run (<code>make bench-compare</code> adds Celery + Redis).</p>'
    ratios = report.get("ratios", {})
    rows = [
        ("tasks/s", cmp_.get("e2e_tasks_per_second"), cmp_.get("celery_tasks_per_second")),
        ("CPU of the whole queue per task, ms", cmp_.get("e2e_system_cpu_ms_per_task"),
         cmp_.get("celery_system_cpu_ms_per_task")),
        ("submit to complete p50 / p95 / p99, ms", _pcts(cmp_.get("e2e_submit_to_complete_ms")),
         _pcts(cmp_.get("celery_submit_to_complete_ms"))),
        ("durability", cmp_.get("durability", {}).get("ai_agents"), cmp_.get("durability", {}).get("celery")),
    ]  # fmt: skip
    body = "".join(f"<tr><td>{_e(a)}</td><td>{_num(b)}</td><td>{_num(c)}</td></tr>" for a, b, c in rows)
    return (
        "<table><tr><th></th><th>ai-agents</th><th>Celery + Redis</th></tr>" + body + "</table>"
        f"<p>Throughput ratio: <b>{_num(ratios.get('e2e_tasks_per_second_over_celery_tasks_per_second'), 2)}x</b>; "
        f"CPU per task ratio: <b>{_num(ratios.get('e2e_system_cpu_per_task_over_celery'), 2)}x</b>.</p>"
        + _peer_rounds(report.get("peer_rounds", {}))
    )


def _peer_rounds(rounds: dict[str, Any]) -> str:
    each = rounds.get("rounds", [])
    if len(each) < 2:
        return ""
    body = "".join(
        f"<tr><td>{n}</td><td>{_num(r.get('e2e_tasks_per_second'))}</td><td>{_num(r.get('celery_tasks_per_second'))}"
        f"</td><td>{_num(r.get('ratio'), 2)}x</td></tr>"
        for n, r in enumerate(each, 1)
    )
    return (
        "<table><tr><th>round (alternating)</th><th>ai-agents tasks/s</th><th>Celery tasks/s</th><th>ratio</th></tr>"
        + body
        + "</table><p>Median of the rounds (what the 3x target reads): "
        + f"<b>{_num(rounds.get('ratio_median'), 2)}x</b>.</p>"
    )


def _machine(report: dict[str, Any]) -> str:
    machine = report.get("machine", {})
    rows = "".join(
        f"<tr><td>{_e(k)}</td><td>{_e(v)}</td></tr>" for k, v in machine.items() if not isinstance(v, dict | list)
    )
    observed = machine.get("postgres_settings_observed") or {}
    settings = ", ".join(f"{k}={v}" for k, v in observed.items())
    return f"<table>{rows}<tr><td>PostgreSQL settings read back</td><td>{_e(settings)}</td></tr></table>"


def _phase_summary(phase: dict[str, Any]) -> str:
    figures = [
        ("tasks/s", phase.get("tasks_per_second") or phase.get("achieved_per_second")),
        ("tasks", phase.get("tasks")),
        ("submit to start p50 / p95 / p99, ms", _pcts(phase.get("submit_to_start_ms"))),
        ("submit to complete p50 / p95 / p99, ms", _pcts(phase.get("submit_to_complete_ms"))),
        ("phase seconds", phase.get("phase_seconds") or phase.get("wall_seconds")),
    ]
    return "<table>" + "".join(f"<tr><td>{_e(a)}</td><td>{_num(b)}</td></tr>" for a, b in figures) + "</table>"


def _heartbeat(report: dict[str, Any]) -> str:
    hb = report.get("heartbeat")
    if not hb:
        return ""
    figures = [
        ("agents", hb.get("agents")),
        ("heartbeats/s achieved", hb.get("achieved_per_second")),
        ("latency p50 / p95 / p99, ms", _pcts(hb.get("latency_ms"))),
        ("error rate", hb.get("error_rate")),
    ]
    rows = "".join(f"<tr><td>{_e(a)}</td><td>{_num(b, 3)}</td></tr>" for a, b in figures)
    return f"<h2>Heartbeats</h2><table>{rows}</table>{_cpu_split(hb.get('cpu', {}))}"


def render(report: dict[str, Any]) -> str:
    sections = []
    for key, title in PHASES:
        phase = report.get(key)
        if not phase:
            continue
        sections.append(f"<h2>{_e(title)} <span class='muted'>({_e(key)})</span></h2>")
        sections.append(_phase_summary(phase) + _phase_charts(report, key) + _cpu_split(phase.get("cpu", {})))
        if key == "e2e_throughput" and report.get("peer_celery"):
            sections.append("<h3>Celery + Redis, the same workload</h3>")
            sections.append(_cpu_split(report["peer_celery"].get("cpu", {})))
    machine = report.get("machine", {})
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>ai-agents runtime bench {_e(report.get('started_at', ''))}</title><style>{CSS}</style></head><body>"
        f"<h1>ai-agents runtime bench</h1><p class='muted'>{_e(report.get('started_at', ''))}, "
        f"{_e(report.get('mode', ''))} mode, {_num(report.get('duration_seconds'))} s; "
        f"{_e(machine.get('nproc'))} CPU {_e(machine.get('cpu_model', ''))}. {_e(machine.get('note', ''))}.</p>"
        f"<h2>Targets</h2>{_targets(report)}<h2>The peer</h2>{_peer(report)}"
        + "".join(sections)
        + _heartbeat(report)
        + f"<h2>Machine</h2>{_machine(report)}</body></html>\n"
    )
