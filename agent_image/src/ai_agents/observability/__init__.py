"""Metrics, structured logging, tracing and the health/metrics HTTP servers."""
