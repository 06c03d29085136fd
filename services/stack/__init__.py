"""``make up`` / ``make down``: the local stack under supervisord (NATS, simulator, every service)."""
