"""The measuring subprocess: `python -m edgenas.latency.worker < job.json`.

Why a fresh process: the search process holds training threads, a fragmented heap and warm
caches that disturb a timing; a new process, pinned to one core before any runtime starts its
thread pool, sees only the model. It reads one JSON job (see `timing.py`) on stdin and writes one
JSON line per timed model as it finishes, so a long LUT build loses nothing if it is killed.
"""

from __future__ import annotations

import json
import sys

from edgenas.latency.timing import pin, run_job


def main() -> int:
    job = json.load(sys.stdin)
    job["core"] = pin(job.get("core"))  # pin before the runtime (and its thread pool) is imported
    from edgenas.latency.runners import RUNNERS

    run_job(job, RUNNERS)
    return 0


if __name__ == "__main__":
    sys.exit(main())
