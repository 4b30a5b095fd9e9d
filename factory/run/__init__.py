"""``factory run``: the whole fleet on this machine, end to end, with a live view.

A fresh SQLite store, a real OpenClaw gateway (a hosted model when ``OPENAI_API_KEY`` or
``ANTHROPIC_API_KEY`` is set, else the built-in offline stub) and the autoscaler with the local
provider ticking in the background. A burst of demo messages goes into the queue; the screen shows
the queue, the fleet scaling up and draining, and the replies with their enqueue→reply latency.
The command ends when every message is done or dead-lettered and the fleet is back to zero, with
a summary.

Whatever ends it (success, an error, Ctrl-C, SIGTERM, the overall timeout), every worker, the
gateway and the stub are stopped, in that order, under shielded cleanup, before it returns.
Everything it writes stays in the demo folder ``.factory/run/`` (store, worker and gateway logs);
OpenClaw itself is installed once per machine under ``~/.cache/factory``.

The modules: ``command`` (the typer command, signals, cleanup report), ``model`` (which model the
gateway uses), ``burst`` (the demo messages), ``demo`` (the demo folder and the shared pace),
``gateway`` (OpenClaw install, gateway and stub), ``fleet`` (autoscaler, observer, burst, until the
run settles), ``state`` (what the run has seen), ``screen`` (live and plain views) and ``summary``.
"""

from contracts.figures import percentile
from factory.run.burst import BurstMessage, demo_burst
from factory.run.command import run
from factory.run.model import ModelPlan, choose_model
from factory.run.state import Outcome, PlanLine, RunState, Tracked

__all__ = [
    "BurstMessage",
    "ModelPlan",
    "Outcome",
    "PlanLine",
    "RunState",
    "Tracked",
    "choose_model",
    "demo_burst",
    "percentile",
    "run",
]
