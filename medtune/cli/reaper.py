"""Stops `medtune up`'s process groups when `up` is gone, however it went (SIGKILL included).

`up` starts this first and writes each child's process-group id to its stdin. The pipe's write end
closes when `up` exits for any reason, so end-of-file here is the one sure sign that `up` died; then every
group gets SIGTERM, and SIGKILL after a grace period. Terminal signals are ignored: this process runs in
a session of its own and answers only to end-of-file.
"""

from __future__ import annotations

import os
import signal
import sys
import time

GRACE_S = 10.0


def _alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _signal(pgids: list[int], sig: int) -> None:
    for pgid in pgids:
        try:
            os.killpg(pgid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    pgids = [int(line) for line in sys.stdin if line.strip().isdigit()]
    _signal(pgids, signal.SIGTERM)
    deadline = time.monotonic() + GRACE_S
    while time.monotonic() < deadline and any(_alive(p) for p in pgids):
        time.sleep(0.2)
    _signal(pgids, signal.SIGKILL)


if __name__ == "__main__":
    main()
