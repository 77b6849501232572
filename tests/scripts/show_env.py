"""Prints the run-contract environment variables as JSON on one line, and lists its checkpoint dir."""

import json
import os

keys = (
    "RUNCTL_JOB_ID",
    "RUNCTL_CHECKPOINT_DIR",
    "RUNCTL_RESUME_FROM",
    "RUNCTL_ATTEMPT",
    "RUNCTL_KEEP_LAST_N",
)
env = {key: os.environ.get(key) for key in keys}
directory = env["RUNCTL_CHECKPOINT_DIR"]
env["checkpoint_dir_is_dir"] = bool(directory) and os.path.isdir(directory)
print("ENV " + json.dumps(env), flush=True)
