-- Chains (store/follow_ups.py): a follow-up names the first task of its chain and how deep it sits, so that a
-- completion is held to its chain's budget (max_chain_depth, max_chain_tasks) without walking the parents. Nullable
-- or with a constant default: no table rewrite, and a follow-up an older replica queues during a rolling upgrade
-- starts a chain of its own.
ALTER TABLE tasks
    ADD COLUMN root_task_id uuid,
    ADD COLUMN chain_depth integer NOT NULL DEFAULT 0;
-- How many tasks a chain holds: read under the chain's lock by every completion that hands work on.
CREATE INDEX tasks_chains ON tasks (root_task_id) WHERE root_task_id IS NOT NULL;
