"""One of several processes hammering the same ledger: argv = LEDGER_PATH WORKER N.
Each iteration creates a job, an event, a resource (intent -> created, billable) and finishes
the job, each in its own short transaction."""

import sys
from pathlib import Path

from runctl.core.ledger import Ledger

path, worker, count = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
with Ledger(path) as ledger:
    for i in range(count):
        job = ledger.create_job(name=f"w{worker}", provider="local", script="train.py", args=[str(i)])
        ledger.add_event("test.write", f"worker {worker} item {i}", job_id=job.id)
        intent = ledger.record_intent(provider="local", kind="process", job_id=job.id)
        ledger.mark_created(
            intent.id, cloud_id=f"{worker}-{i}", state="running", billable=True, rate_usd_per_hour=1.0
        )
        ledger.transition(intent.id, "terminated", billable=False)
        ledger.finish_job(job.id, "succeeded", exit_code=0)
print("done", flush=True)
