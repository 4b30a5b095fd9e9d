"""Local provider, the embedded default: each "machine" is a ``factory worker run`` process here.

Ownership is a launch record: ``create`` starts the worker in its own session (so the
``factory reconcile`` that started it may exit while the worker runs on), with stdout and stderr
appended to ``<state_dir>/<launch>.log``, and writes ``<state_dir>/<launch>.json`` atomically
before it returns. The record holds the pid *and* the process's start time (field 22 of
``/proc/<pid>/stat``, in clock ticks since boot) and the kernel's boot id; a pid counts as our
worker only while all three match, so a pid the kernel has handed to another process is never
mistaken for ours and never signalled. Signals go through a pidfd opened before that check, so the
check and the signal refer to one process.

State, as ``list``/``find`` report it::

    running    alive, and its start time matches the record
    stopping   alive, and ``stop`` (or ``destroy``) asked it to finish
    stopped    exited (the record stays until ``destroy``, so the reconciler sees it ended)
    failed     exited non-zero, unasked, within ``failed_window_s`` of its start

An exited worker that is a child of this process is reaped (no zombies) and its exit code kept in
the record. A worker started by an earlier ``factory reconcile`` is not our child: its exit code
is read from ``/proc`` while it is a zombie of some other parent, and is otherwise recorded as
``"unknown"`` (reported ``stopped``).

Mutations of ``state_dir`` hold an ``flock`` on ``<state_dir>/.lock``, so two processes (a cron
reconcile and an operator's) never start one launch twice nor resurrect a removed record. Blocking
file and process work runs in worker threads; waits for an exit poll with ``anyio.sleep``.
``aclose`` never stops workers: they belong to the fleet. ``destroy_all`` is for callers such as
``factory run`` that must leave nothing behind.

The modules: ``config`` (``LocalConfig`` and the worker's environment), ``records`` (launch
records on disk and their lock), ``procs`` (spawning, ``/proc`` identity, signals, reaping),
``launches`` (the lock-held, blocking operations on records and their processes), ``provider``
(``LocalProvider``, the async protocol over them) and ``errors`` (OS failures as ``ProviderError``).
"""

from autoscaler.providers.local.config import LocalConfig
from autoscaler.providers.local.provider import LocalProvider
from autoscaler.providers.local.records import LaunchRecord

__all__ = ["LaunchRecord", "LocalConfig", "LocalProvider"]
