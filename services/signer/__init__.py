"""The signer process (``python -m services.signer``): sole holder of the Stark private key.

Modules: ``settings`` (env), ``custody`` (key loading and the redacted key holder), ``validation``
(market rules, decimal/tick/step/timestamp checks), ``policy`` (allowed markets, notional, rate),
``audit`` (``audit.signer.<account>``), ``jwt_manager`` (``POST /auth``, onboarding, refresh),
``handlers`` (request/reply), ``service`` (the process), ``client`` (``SignerClient`` for callers).
"""
