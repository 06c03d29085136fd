"""``pdx`` subcommands: each module here exposes ``command`` (a click command or group)."""
