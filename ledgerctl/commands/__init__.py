"""The ``ledger`` subcommands, one module per command group (setup, services, tokens,
producer keys, emitting, history, export and replay, verify, quarantine, ATNA).

Each module defines its commands as plain typer callbacks (and its sub-app, if it is a
group); ``ledgerctl.cli`` registers them on the app, in help order. ``common`` holds
what they share. Like all of ``ledgerctl``, they may import every package of the
project; only ``ledgerctl.cli`` imports them. Heavy imports stay inside the commands.
"""
