-- Follow-up tasks (a task's completion hands work on to other agent types, store/follow_ups.py): a follow-up
-- names its parent and its place among the parent's follow-ups, and the parent lists its children, written once
-- by the completion that created them. A message sent with a completion names the task that sent it. Nullable or with a constant default: metadata-only changes (no table
-- rewrite), and older replicas that insert without these columns keep working during a rolling upgrade.
ALTER TABLE tasks
    ADD COLUMN parent_task_id uuid REFERENCES tasks (task_id),
    ADD COLUMN follow_up_index integer,
    ADD COLUMN child_task_ids uuid[] NOT NULL DEFAULT '{}';
-- At most one task per (parent, index): even a completion replayed past its fence could not create a follow-up
-- twice. Also the index a child's foreign key check and "the children of" read.
CREATE UNIQUE INDEX tasks_follow_ups ON tasks (parent_task_id, follow_up_index) WHERE parent_task_id IS NOT NULL;
ALTER TABLE messages ADD COLUMN sender_task_id uuid;
