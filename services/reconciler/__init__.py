"""The reconciler: venue REST truth against the ``EXEC`` stream, with reports and corrections.

Modules, one job each: ``settings`` (env), ``venue`` (REST rows as typed records), ``fetch``
(rate-limited reads; failures are unknown, never missing), ``signer_link`` (account and JWTs from
the signer), ``follower`` (the EXEC projection and our CMD submits, kept current), ``compare`` (the
pure comparison and correction plan), ``build`` (Nautilus events and reports from venue records),
``positions`` (net quantity per market), ``account`` (cash balance, funding), ``mass_status`` (the
start-up ExecutionMassStatus), ``emit`` (publishing with the router's Msg-Ids), ``state``
(watermarks, start-up marker, dedupe set), ``runner`` (one run), ``triggers`` (start-up, periodic,
``ctl.reconcile.<acct>``), ``service`` (the process). Run it with ``python -m services.reconciler``.
"""
