"""c360 sales service."""
