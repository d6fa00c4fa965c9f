"""The asyncio plumbing every process shares: task ownership, cancel-and-wait, leak watch, Prometheus collectors."""
