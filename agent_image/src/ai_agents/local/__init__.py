"""The local fleet: a throwaway PostgreSQL and orchestrators and agents as processes."""
