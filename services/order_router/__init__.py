"""The order router: SubmitOrder / ModifyOrder / CancelOrder / CancelAllOrders / BatchCancelOrders /
QueryOrder commands from ``CMD`` to Paradex, and venue updates back as Nautilus order events on
``EXEC``, exactly once.

Modules, one job each: ``settings`` (environment), ``service`` (wiring, lifecycle), ``lease`` (one
active router per account), ``dispatcher`` (consumer, ordering, acks), ``commands`` (per-command
events and venue calls), ``batching`` (batch submit), ``pretrade`` (checks before the venue),
``market_data`` (instruments, marks, venue state), ``mapping`` (Nautilus <-> Paradex), ``orders``
(projection, locks, event writing), ``transitions`` (venue truth -> events), ``venue`` (REST calls,
rate limits, crash hooks), ``ratelimit`` (token buckets), ``signer_port`` (the signer client),
``private_stream`` (private WebSocket, AccountState), ``inflight`` (unknown outcomes, in-flight and
open-order checks).
"""
