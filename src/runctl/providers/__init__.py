"""Providers: where a job's machine comes from (this machine, AWS EC2, RunPod)."""
