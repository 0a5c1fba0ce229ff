"""What every c360 service shares: store wiring, outbox relay, envelope, gRPC bootstrap, errors."""

import os

# c360 forks children (embedded PostgreSQL and nats-server, service processes) from processes
# that run gRPC. gRPC's own fork handlers then run in each child between fork and exec, where
# they can break the child (seen: a nats-server that never started). No child of ours uses
# gRPC before exec, so the handlers are switched off; this must happen before gRPC starts.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
