"""Benchmarks: the shift world, the log-linear world, speed."""
