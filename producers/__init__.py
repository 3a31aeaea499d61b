"""The producer library embedded in PACS integrations: typed events, codec, emitter.

Invariant: this package imports nothing else of this product (only the ``schemas``
data package), so a host can embed it alone; it never crashes its host with an
unexpected exception type, only ``ProducerError`` subclasses.
"""
