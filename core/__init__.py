"""What every app shares: roles and permissions, runs (jobs) and their state machine, metrics, artifacts."""
