"""``python -m ledgerctl``: the same as the ``ledger`` command (``ledgerctl.cli``)."""

from ledgerctl.cli import main

if __name__ == "__main__":
    main()
