"""Workflows: the multi-step operations (run locally, train remotely) built on the core."""
