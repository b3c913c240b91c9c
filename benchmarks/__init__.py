"""vtd's benchmark: ``python -m benchmarks`` (``--quick`` for a smoke run)."""
