"""Metrics, structured logging, tracing and the health/metrics apps every process serves."""
