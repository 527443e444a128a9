"""PostgreSQL storage: schema migrations, the task queue, agents, messages and resources."""
