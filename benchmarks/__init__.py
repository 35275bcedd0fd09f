"""Benchmarks: us and the peers in one process, interleaved; run `python -m benchmarks.<name>`."""
