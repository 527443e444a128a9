"""Every query the charts ship (dashboard panels, recording and alert rules, ScaledObject triggers), made
evaluable against Prometheus: Grafana variables substituted, alert conditions reduced to what must have data."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

_COMPARISONS = ("==", "!=", ">=", "<=", ">", "<")
_SET_OPS = ("and", "or", "unless")


@dataclass(frozen=True)
class ChartQuery:
    source: str  # e.g. "dashboard scaling.json: Replicas per type", "alert AiAgentsHighErrorRate"
    expr: str
    needs_istio: bool = False
    # reads istio_request* series: L7 metrics, which only Envoy (a waypoint or gateway) reports; ztunnel reports L4
    needs_envoy: bool = False
    # filters on the fault-injection response flags (FI, DI): data only while the mesh injects faults
    needs_fault_injection: bool = False
    # reads kube_* series (kube-state-metrics, part of kube-prometheus-stack) with no fallback that does not
    needs_kube_state_metrics: bool = False


def substitute_grafana(
    expr: str, *, namespace: str, rate_interval: str = "2m", range_: str = "10m", interval: str = "1m"
) -> str:
    """Replace the Grafana variables the dashboards use with concrete values."""
    out = expr.replace("$__rate_interval", rate_interval).replace("${__rate_interval}", rate_interval)
    out = out.replace("$__range", range_).replace("${__range}", range_)
    out = out.replace("$__interval", interval).replace("${__interval}", interval)
    out = re.sub(r"\$\{namespace(?::\w+)?\}|\$namespace\b", namespace, out)
    # The `cluster` variable's "All" (its default): also matches series without a cluster label.
    out = re.sub(r"\$\{cluster(?::\w+)?\}|\$cluster\b", ".*", out)
    return out


def _top_level_split(expr: str, separators: tuple[str, ...], *, words: bool) -> list[tuple[str, str]]:
    """Split on separators outside (), [], {} and strings; returns (operator-before, part) pairs."""
    parts: list[tuple[str, str]] = []
    depth = 0
    quote = ""
    start = 0
    op_before = ""
    i = 0
    while i < len(expr):
        ch = expr[i]
        if quote:
            if ch == "\\":
                i += 2
                continue
            if ch == quote:
                quote = ""
        elif ch in "\"'`":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif depth == 0:
            for sep in separators:
                if not expr.startswith(sep, i):
                    continue
                if words:
                    before = expr[i - 1] if i else " "
                    after = expr[i + len(sep)] if i + len(sep) < len(expr) else " "
                    if not (before.isspace() or before == ")") or not (after.isspace() or after == "("):
                        continue
                elif (
                    (sep in (">", "<") and expr.startswith(sep + "=", i))
                    or sep == "="
                    or (sep in ("==",) and expr.startswith("=~", i))
                ):
                    continue
                parts.append((op_before, expr[start:i]))
                op_before = sep
                i += len(sep)
                start = i
                break
            else:
                i += 1
                continue
            continue
        i += 1
    parts.append((op_before, expr[start:]))
    return parts


def _strip_modifiers(text: str) -> str:
    """Drop `bool` and vector-matching clauses (`on(...)`, `ignoring(...)`, `group_left(...)`) at the front."""
    text = text.strip()
    while True:
        m = re.match(r"^(bool|on\s*\([^)]*\)|ignoring\s*\([^)]*\)|group_(?:left|right)(?:\s*\([^)]*\))?)\s*", text)
        if not m:
            return text
        text = text[m.end() :]


def _is_scalar(text: str) -> bool:
    """Only numbers and arithmetic: `0.01`, `(14.4 * (1 - 0.999))`."""
    return bool(re.fullmatch(r"[\s\d.eE+\-*/%^()]*", text)) and any(c.isdigit() for c in text)


def _unwrap(text: str) -> str | None:
    """The inside of `( ... )` when the parentheses enclose the whole text, else None."""
    text = text.strip()
    if not (text.startswith("(") and text.endswith(")")):
        return None
    depth = 0
    for i, ch in enumerate(text):
        depth += ch == "("
        depth -= ch == ")"
        if depth == 0 and i < len(text) - 1:
            return None
    return text[1:-1]


def _is_condition(text: str) -> bool:
    """Whether an operand of a set operation compares or asks for absence (an alert condition)."""
    for _op, operand in _top_level_split(text.strip(), _SET_OPS, words=True):
        operand = _strip_modifiers(operand)
        if len(_top_level_split(operand, _COMPARISONS, words=False)) > 1:
            return True
        if re.match(r"absent(?:_over_time)?\s*\(", operand.strip()):
            return True
        inner = _unwrap(operand)
        if inner is not None and _is_condition(inner):
            return True
    return False


def data_probes(expr: str) -> list[str]:
    """Sub-expressions that must return data while the system is healthy and under load.

    An alert's expression is empty when it does not fire, so its condition is cut off: each operand of a
    top-level `and`/`or`/`unless` is taken on its own (the `unless` side may be empty), and of a comparison
    the non-scalar sides are kept. Parenthesised groups are opened, and `absent(x)` is probed as `x`.
    """
    parts = _top_level_split(expr.strip(), _SET_OPS, words=True)
    if len(parts) > 1 and all(op in ("", "or") for op, _ in parts) and not _is_condition(expr):
        # A union of plain series (`errors or 0 * requests`): a side may be empty by design, the union may not.
        return [expr.strip()]
    probes: list[str] = []
    for op, operand in parts:
        if op == "unless":
            continue
        operand = _strip_modifiers(operand)
        sides = [_strip_modifiers(s) for _op, s in _top_level_split(operand, _COMPARISONS, words=False)]
        for side in sides:
            side = side.strip()
            if not side or _is_scalar(side):
                continue
            inner = _unwrap(side)
            if inner is not None:
                if len(sides) > 1 or _top_level_split(inner, _SET_OPS, words=True)[1:] or _is_condition(inner):
                    probes.extend(data_probes(inner))
                else:
                    probes.append(side)
                continue
            m = re.fullmatch(r"absent(?:_over_time)?\s*\((.*)\)", side, re.S)
            if m:
                probes.extend(data_probes(re.sub(r"\[[^\]]*\]\s*$", "", m.group(1).strip())))
                continue
            probes.append(side)
    return probes


def _panel_queries(panels: list[dict[str, Any]], title_prefix: str) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    for panel in panels:
        title = f"{title_prefix}: {panel.get('title', panel.get('type', '?'))}"
        for target in panel.get("targets", []) or []:
            ds = target.get("datasource") or panel.get("datasource") or {}
            if isinstance(ds, dict) and ds.get("type") not in (None, "prometheus"):
                continue
            if target.get("expr"):
                found.append((title, target["expr"]))
        found.extend(_panel_queries(panel.get("panels", []) or [], title_prefix))
    return found


def alternatives(expr: str) -> list[str]:
    """The operands of a top-level `or`: a query with a fallback needs data from only one of them."""
    return [part.strip() for _op, part in _top_level_split(expr.strip(), ("or",), words=True)]


def reads_only(expr: str, series: re.Pattern[str]) -> bool:
    """Whether every alternative of the query reads a series matching `series` (it has no fallback without)."""
    return all(series.search(alternative) for alternative in alternatives(expr))


_KUBE_STATE_METRICS = re.compile(r"\bkube_[a-z_]+")


def _query(source: str, expr: str) -> ChartQuery:
    return ChartQuery(
        source,
        expr,
        needs_istio="istio_" in expr,
        needs_envoy=re.search(r"\bistio_request", expr) is not None,
        needs_fault_injection=re.search(r"response_flags=~?\"[^\"]*(FI|DI)", expr) is not None,
        needs_kube_state_metrics=reads_only(expr, _KUBE_STATE_METRICS),
    )


def chart_queries(objects: list[dict[str, Any]], *, namespace: str, **grafana: str) -> list[ChartQuery]:
    """All Prometheus queries of the rendered release: dashboards (nested panels included, Grafana's variables
    filled in by `substitute_grafana`, which `grafana` passes intervals to), PrometheusRules, ScaledObjects."""
    queries: list[ChartQuery] = []
    for obj in objects:
        kind = obj.get("kind")
        if kind == "ConfigMap" and (obj["metadata"].get("labels") or {}).get("grafana_dashboard"):
            for file_name, text in (obj.get("data") or {}).items():
                if not file_name.endswith(".json"):
                    continue
                dashboard = json.loads(text)
                for title, expr in _panel_queries(dashboard.get("panels", []), f"dashboard {file_name}"):
                    concrete = substitute_grafana(expr, namespace=namespace, **grafana)
                    queries.append(_query(title, concrete))
        elif kind == "PrometheusRule":
            for group in obj["spec"].get("groups", []):
                for rule in group.get("rules", []):
                    label = f"record {rule['record']}" if "record" in rule else f"alert {rule.get('alert')}"
                    expr = str(rule["expr"])
                    queries.append(_query(f"rule {label}", expr))
        elif kind == "ScaledObject":
            for trigger in obj["spec"].get("triggers", []):
                if trigger.get("type") == "prometheus":
                    queries.append(
                        ChartQuery(
                            f"ScaledObject {obj['metadata']['name']} trigger {trigger.get('name')}",
                            trigger["metadata"]["query"],
                        )
                    )
    return queries
