"""moto's S3 server with its state kept across restarts, for the stack test only (not for production).

moto holds objects in memory. Its recorder appends each request to a log; this starts the server with
the log on the volume, replays the log (the recorder stops while it replays, so nothing is logged
twice), then marks the server ready for the healthcheck. A `down`/`up` of the stack so finds every
bucket and object it had.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import urllib.request
from pathlib import Path

READY = Path("/tmp/s3-ready")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8333)
    parser.add_argument("--log", type=Path, required=True)
    args = parser.parse_args()
    # The recorder reads these when moto is imported.
    os.environ["MOTO_ENABLE_RECORDING"] = "1"
    os.environ["MOTO_RECORDER_FILEPATH"] = str(args.log)
    from moto.server import ThreadedMotoServer

    READY.unlink(missing_ok=True)
    server = ThreadedMotoServer(ip_address="0.0.0.0", port=args.port, verbose=False)
    server.start()
    if args.log.exists() and args.log.stat().st_size:
        replay = f"http://127.0.0.1:{args.port}/moto-api/recorder/replay-recording"
        # The replay answers once every recorded request has run again; its body says nothing.
        urllib.request.urlopen(urllib.request.Request(replay, method="POST"), timeout=600).close()
    READY.touch()
    sys.stdout.write(f"s3 (moto) ready on :{args.port}, log {args.log}\n")
    sys.stdout.flush()
    signal.sigwait({signal.SIGTERM, signal.SIGINT})
    server.stop()


if __name__ == "__main__":
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    main()
