"""``pdx``: one entry point; every subcommand module under ``services/cli/commands`` registers itself."""

from __future__ import annotations

import importlib
import logging
import pkgutil

import click

from services.cli import commands


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(package_name="paradex-bus", prog_name="pdx")
def cli() -> None:
    """paradex-bus: Paradex market data and order execution over NATS JetStream.

    Start the local stack with `make up`, then try `pdx status` and `pdx tail 'md.paradex.>'`.
    """


def _register() -> None:
    for mod in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"services.cli.commands.{mod.name}")
        cmd = getattr(module, "command", None)
        if isinstance(cmd, click.Command):
            cli.add_command(cmd)


_register()


def main() -> None:
    # The bus logs reconnects for long-running services; a CLI reports problems as one line itself.
    logging.getLogger("bus").setLevel(logging.CRITICAL)
    cli(prog_name="pdx")


if __name__ == "__main__":
    main()
