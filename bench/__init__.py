"""Benchmarks: the replay benchmark and the shared workload generator."""
