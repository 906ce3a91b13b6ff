"""Tests of the package boundary: ``jobs`` runs on compute nodes without the others."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

JOBS = Path(__file__).resolve().parents[2] / "jobs"
FORBIDDEN = {"orchestrator", "launch", "submitit"}


def _imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("path", sorted(JOBS.glob("*.py")), ids=lambda p: p.name)
def test_jobs_module_imports_no_other_package(path: Path) -> None:
    assert not _imported_roots(path) & FORBIDDEN


def test_jobs_sklearn_imported_lazily() -> None:
    tree = ast.parse((JOBS / "digits.py").read_text())
    top_level = [n for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)]
    assert all("sklearn" not in ast.unparse(n) for n in top_level)
