"""Pull metric names out of PromQL expressions and out of docs/contracts.md.

A small tokenizer rather than a full parser: it only has to find the series names a query reads, so that
dashboards, alerts and ScaledObjects can be checked against what the runtime exports.
"""

from __future__ import annotations

import re
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]

# Words that look like identifiers in PromQL but are not series names.
_KEYWORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "and",
    "or",
    "unless",
    "offset",
    "inf",
    "nan",
    "atan2",
}
_GROUPING = {"by", "without", "on", "ignoring", "group_left", "group_right"}
# Aggregations may be written `sum by (x) (...)`, so the name is not always followed by "(".
_AGGREGATIONS = {
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
}
_TOKEN = re.compile(
    r'"(?:[^"\\]|\\.)*"'  # double-quoted string
    r"|'(?:[^'\\]|\\.)*'"  # single-quoted string
    r"|\{[^}]*\}"  # label matchers
    r"|\[[^\]]*\]"  # range / subquery selectors
    r"|\d[\dA-Za-z_.]*"  # numbers and durations such as 5m
    r"|(?P<ident>[a-zA-Z_:][a-zA-Z0-9_:]*)(?P<call>\s*\()?"
    r"|\$\{?[a-zA-Z_][a-zA-Z0-9_]*\}?"  # Grafana / Helm-rendered template variables
    r"|.",
    re.S,
)


def metric_names(expr: str) -> set[str]:
    """Series names referenced by a PromQL expression (functions, keywords and labels excluded)."""
    names: set[str] = set()
    tokens = list(_TOKEN.finditer(expr))
    skip_until_close = False
    for match in tokens:
        ident = match.group("ident")
        token = match.group(0)
        if skip_until_close:
            # Inside `by (...)`, `on (...)` and friends: label names until the closing parenthesis.
            if token == ")":
                skip_until_close = False
            continue
        if ident is None:
            continue
        if ident in _GROUPING:
            skip_until_close = bool(match.group("call"))
            continue
        if match.group("call") or ident.lower() in _KEYWORDS or ident in _AGGREGATIONS:
            continue
        names.add(ident)
    return names


def _strip_histogram_suffix(name: str) -> str:
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def contract_metric_names(path: Path = REPO_ROOT / "docs" / "contracts.md") -> set[str]:
    """Metric names listed in the Metrics table of docs/contracts.md."""
    names: set[str] = set()
    in_metrics = False
    for line in path.read_text().splitlines():
        if line.startswith("## "):
            in_metrics = line.strip() == "## Metrics"
            continue
        if in_metrics and line.startswith("| `"):
            names.update(re.findall(r"`([a-z_:][a-z0-9_:]*)`", line.split("|")[1]))
    return names


def is_known_runtime_series(name: str, exported: set[str]) -> bool:
    """True when `name` (possibly a histogram's _bucket/_sum/_count series) is in `exported`."""
    return name in exported or _strip_histogram_suffix(name) in exported
