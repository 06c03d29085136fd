"""Feed handler: Paradex public market data and reference data onto JetStream (issue #5).

``python -m services.feed_handler [--mode shard|replica] [--standby] [--markets A,B]``; settings in
``services.feed_handler.settings``; the process in ``services.feed_handler.service``.
"""
