"""Benchmark harness for c360 (`make bench`): measures, never asserts a target."""
