"""Training-script stand-ins for the local benchmark (run by it, not by run.py).

    python workload.py pass                   # start and exit: start-up is all there is
    python workload.py output MIB             # write MIB MiB to stdout as fast as it can
    python workload.py cpu SECONDS RESULT     # burn SECONDS of CPU, a line each second;
                                              # then write its own CPU seconds to RESULT

The same file runs under ``runctl local`` and directly with python, so the work is identical.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path


def main(argv: list[str]) -> None:
    mode = argv[0]
    if mode == "output":
        chunk = (b"x" * 127 + b"\n") * 512  # 64 KiB of log-like lines
        out = sys.stdout.buffer
        for _ in range(int(argv[1]) * 16):
            out.write(chunk)
        out.flush()
    elif mode == "cpu":
        seconds, result = float(argv[1]), Path(argv[2])
        next_line = 1.0
        while (spent := time.process_time()) < seconds:
            sum(range(10_000))
            if spent >= next_line:
                print(f"step {int(spent)}: loss {1 / spent:.4f}", flush=True)
                next_line += 1.0
        result.write_text(str(time.process_time()))


if __name__ == "__main__":
    main(sys.argv[1:])
