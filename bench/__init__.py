"""Benchmark harness for c360 (`make bench`): measures, never asserts a target."""

import c360_platform  # noqa: F401  (first: it settles gRPC's fork handling before gRPC loads)
