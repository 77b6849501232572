"""Core services every other layer builds on: errors, config, retry, ledger, lifecycle,
shutdown, checkpoints and metrics. Nothing here knows about a particular cloud."""
