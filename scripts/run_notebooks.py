#!/usr/bin/env python3
"""Executes every notebook headless (nbclient) and fails on any cell error.

Usage: run_notebooks.py [DIR_OR_NOTEBOOK ...]. Each notebook runs with its own folder as the working
directory; outputs are not written back, so the committed notebooks stay clean.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError


def notebooks(args: list[str]) -> list[Path]:
    found: list[Path] = []
    for arg in args or ["notebooks"]:
        path = Path(arg)
        if path.is_dir():
            found.extend(sorted(path.glob("*.ipynb")))
        elif path.exists():
            found.append(path)
        else:
            print(f"no notebooks at {path}: nothing to run there")
    return found


def main(argv: list[str]) -> int:
    passed = failed = 0
    for path in notebooks(argv):
        nb = nbformat.read(path, as_version=4)
        client = NotebookClient(nb, timeout=600, kernel_name="python3",
                                resources={"metadata": {"path": str(path.parent)}})
        start = time.perf_counter()
        try:
            client.execute()
        except CellExecutionError as err:
            failed += 1
            print(f"FAILED {path}: {err}", flush=True)
            continue
        passed += 1
        print(f"ok     {path} ({time.perf_counter() - start:.1f}s)", flush=True)
    print(f"notebooks: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
