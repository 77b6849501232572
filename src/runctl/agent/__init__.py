"""The on-machine agent: runs the user's script under the run contract, watches for
interruptions (signals, EC2 spot notices), and syncs checkpoints, logs and a status heartbeat
to the job's storage so the controller never needs a shell on the machine."""
