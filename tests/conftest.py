"""Shared test setup: helper modules in tests/support and tests/launch are importable."""

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
# Test modules are imported by path (--import-mode=importlib), so modules that tests
# share must be put on sys.path explicitly.
for folder in (HERE / "support", HERE / "launch"):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
