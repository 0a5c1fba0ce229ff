"""What every c360 service shares: store wiring, outbox relay, envelope, gRPC bootstrap, errors."""
