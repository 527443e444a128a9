-- The W3C trace context of the call that submitted a task, so that leasing and running it continue that trace
-- (ai_agents.observability.task_trace). Nullable and without a default: a metadata-only change (no table
-- rewrite), rows from before it and submits that were not traced hold NULL, and older replicas that insert
-- without these columns keep working during a rolling upgrade.
ALTER TABLE tasks ADD COLUMN traceparent text, ADD COLUMN tracestate text;
