"""The per-account runtime (Mission Control's Module 13) on our queue.

One process per account: its agents' notifications and heartbeats become queue messages in each
agent's session conversation, delivered by one pinned worker per agent (:mod:`worker`) through
the account's OpenClaw gateway; the store settles a notification when its message completes
(:mod:`contracts.sqlite.runtime`). ``/health`` and ``/version`` report on it, and the account's
runtime status is kept online, degraded or offline.
"""
