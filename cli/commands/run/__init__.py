"""Commands that run the servers: `gatectl controlplane serve`, `gatectl dataplane serve`, `gatectl up`."""
