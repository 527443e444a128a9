-- The task queue, the agent registry, messages and resource quotas.
CREATE SEQUENCE lease_tokens;

CREATE TABLE tasks (
    task_id          uuid PRIMARY KEY,
    agent_type       text NOT NULL,
    state            text NOT NULL CHECK (state IN ('queued', 'leased', 'succeeded', 'failed', 'cancelled', 'dead_letter')),
    payload          jsonb NOT NULL,
    result           jsonb,
    error            text NOT NULL DEFAULT '',
    priority         integer NOT NULL DEFAULT 0,
    idempotency_key  text UNIQUE,
    attempts         integer NOT NULL DEFAULT 0,
    max_attempts     integer NOT NULL,
    lease_owner      text,
    lease_token      bigint,
    lease_expires_at timestamptz,
    available_at     timestamptz NOT NULL DEFAULT now(),
    progress         real NOT NULL DEFAULT 0,
    progress_message text NOT NULL DEFAULT '',
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    first_leased_at  timestamptz,
    leased_at        timestamptz,
    finished_at      timestamptz
);
-- Leasing reads only queued rows of one type in priority order.
CREATE INDEX tasks_queue ON tasks (agent_type, priority DESC, created_at) WHERE state = 'queued';
-- The expiry sweep reads only leased rows.
CREATE INDEX tasks_lease_expiry ON tasks (lease_expires_at) WHERE state = 'leased';
-- Queue depth per type (also KEDA's optional postgresql trigger) and filtered listing.
CREATE INDEX tasks_state_type ON tasks (state, agent_type, created_at);
CREATE INDEX tasks_type_created ON tasks (agent_type, created_at);
CREATE INDEX tasks_created ON tasks (created_at);

CREATE TABLE agents (
    agent_id       text PRIMARY KEY,
    agent_type     text NOT NULL,
    state          text NOT NULL CHECK (state IN ('active', 'draining', 'deregistered')),
    labels         jsonb NOT NULL DEFAULT '{}',
    capacity       integer NOT NULL DEFAULT 1,
    address        text NOT NULL DEFAULT '',
    version        text NOT NULL DEFAULT '',
    running        integer NOT NULL DEFAULT 0,
    registered_at  timestamptz NOT NULL DEFAULT now(),
    last_heartbeat timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX agents_type_state ON agents (agent_type, state);

CREATE TABLE messages (
    message_id         bigserial PRIMARY KEY,
    sender             text NOT NULL DEFAULT '',
    recipient_agent_id text,
    recipient_type     text,
    to_all             boolean NOT NULL DEFAULT false,
    topic              text NOT NULL DEFAULT '',
    body               jsonb NOT NULL DEFAULT '{}',
    created_at         timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE resource_quotas (
    agent_type text NOT NULL,
    resource   text NOT NULL,
    quota      bigint NOT NULL CHECK (quota >= 0),
    PRIMARY KEY (agent_type, resource)
);

CREATE TABLE resource_allocations (
    allocation_id uuid PRIMARY KEY,
    agent_id      text NOT NULL,
    agent_type    text NOT NULL,
    resource      text NOT NULL,
    amount        bigint NOT NULL CHECK (amount > 0),
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX resource_allocations_type ON resource_allocations (agent_type, resource);
CREATE INDEX resource_allocations_agent ON resource_allocations (agent_id);
