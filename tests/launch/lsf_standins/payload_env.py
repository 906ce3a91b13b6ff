"""Payload for the quoting tests: each rank writes its argv and environment to a file."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

spec = json.loads(Path(sys.argv[1]).read_text())
rank = os.environ["OMPI_COMM_WORLD_RANK"]
record = {"argv": sys.argv, "env": dict(os.environ)}
(Path(spec["trial_dir"]) / f"env-rank{rank}.json").write_text(json.dumps(record))
