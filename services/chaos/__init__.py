"""Whole-system chaos runs (``pdx chaos``, ``make chaos``) and the invariant checker.

Modules, one job each:

* ``stack`` -- the full stack as real OS processes on free ports in a temporary directory: NATS (one
  server, or a 3-node JetStream cluster with R3 streams), the simulator with background flow, the
  signer, two feed handlers, the book builder, the order router and the reconciler; per-service NATS
  users from ``bus.auth``; ``kill()`` (SIGKILL), ``term()`` (SIGTERM) and restart of any of them.
* ``health`` -- follows every ``ServiceHealth`` on ``svc.*.*.health``: current state per instance,
  counters summed over restarts, waits for "ready".
* ``workload`` -- a strategy-like client: places, modifies and cancels orders through ``CMD`` using
  quotes and instruments from the bus, and follows its orders on ``EXEC``.
* ``faults`` -- the fault catalogue and the seeded schedule, and how each fault is applied and
  what "recovered" means for it.
* ``probe`` -- a publisher that measures the publish stall during a stream-leader election.
* ``invariants`` -- the end-of-run comparison of the bus with the simulator's ground truth.
* ``runner`` -- one run: start, workload, faults, quiet period, convergence, the checker.
* ``report`` -- printing the schedule, recovery times, counters and the verdict.
"""
