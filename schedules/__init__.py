"""Push schedules: agents that speak first, exactly once per slot.

``slots`` is the pure slot math (daily, weekly and monthly HH:mm in an IANA zone); the dispatcher
and broadcasts build on it.
"""
