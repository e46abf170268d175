"""The subprocess side of a runner: read a Job, measure it, write the result as JSON.

Each engine runs in its own process so that the parent can sample the memory of that
process tree alone (driver, workers, and for PySpark the JVM).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .method import Job


def child_main(measure: Callable[[Job], dict[str, Any]]) -> None:
    job = Job.from_json(json.loads(sys.argv[1]))
    result = measure(job)
    Path(sys.argv[2]).write_text(json.dumps(result, default=float))
