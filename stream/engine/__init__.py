"""The engine: decode, score, maintain models and decide alerts for a batch of records, no I/O.

:func:`~vigil.stream.engine.processor.build_engine` builds it from the configuration for
``vigil run``, ``vigil replay``, the demo and the benchmarks alike.
"""
