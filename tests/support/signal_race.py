"""The agent side of the signal race test: ``python -m tests.support.signal_race ROOT N``.

Runs ``N`` tiny jobs one after another through the real agent (:func:`run_agent`, local
storage), each a shell script that saves nothing, exits 0 at once on SIGTERM, and writes its pid
to ``ROOT/<i>/ready`` when its trap is set. The test signals this process and the script at the
same instant; the agent's recorded outcome of each trial is appended to ``ROOT/results.jsonl``.

A SIGTERM that reaches this process between trials (after the agent returned) is recorded as
``late`` instead of killing it, so the test can tell "lost" from "arrived after the outcome".
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

SCRIPT = """#!/bin/sh
trap 'exit 0' TERM
echo $$ > "$RACE_READY.tmp" && mv "$RACE_READY.tmp" "$RACE_READY"
sleep 60 &
wait $!
exit 3
"""


def main(root: Path, trials: int) -> None:
    from runctl.agent.runner import AgentOptions, run_agent
    from runctl.storage import open_storage

    late: list[int] = []
    signal.signal(signal.SIGTERM, lambda signum, _frame: late.append(signum))
    script = root / "job.sh"
    script.write_text(SCRIPT)
    script.chmod(0o755)
    with (root / "results.jsonl").open("a") as results:
        for trial in range(trials):
            here = root / str(trial)
            here.mkdir()
            os.environ["RACE_READY"] = str(here / "ready")
            options = AgentOptions(
                job_id=f"race-{trial}",
                script=str(script),
                workdir=here / "work",
                grace_period=30,
                heartbeat=0.02,  # the loop is often busy uploading, as in the field
            )
            before = len(late)
            result = run_agent(options, open_storage(str(here / "storage")))
            late_signal = len(late) > before
            record = {"trial": trial, "state": result.state, "detail": result.detail, "late": late_signal}
            results.write(json.dumps(record) + "\n")
            results.flush()


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]))
