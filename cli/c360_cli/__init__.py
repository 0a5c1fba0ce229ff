"""The c360 command-line tool."""

import c360_platform  # noqa: F401  (first: it settles gRPC's fork handling before gRPC loads)
