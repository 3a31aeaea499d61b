"""The ``ledger`` command: the composition root that wires producers, consumers and ledger.

Invariant: this is the only package that imports all three; nothing imports it.
"""
