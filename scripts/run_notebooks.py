#!/usr/bin/env python3
"""Executes the notebooks headless (nbclient) and keeps the committed copies in step with the code.

Usage:
  run_notebooks.py [DIR_OR_NOTEBOOK ...]          `make test`: execute each notebook in memory, fail on
                                                  any cell error, and fail when the committed file is
                                                  not an executed, current copy (see check_committed)
  run_notebooks.py --write [DIR_OR_NOTEBOOK ...]  `make notebooks`: execute and write the outputs back

The notebooks are committed with their outputs so that tables and plots show when browsed on a code
host. The check compares the *shape* of each cell's outputs (which kinds: stream, table, image, value),
never their text, so timings and random ids do not fail it; an unexecuted or stale notebook does.
Each notebook runs with its own folder as the working directory.
"""

from __future__ import annotations

import argparse
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


def code_cells(nb) -> list[tuple[int, dict]]:
    """(1-based cell number, cell) for every code cell with source."""
    return [(i, c) for i, c in enumerate(nb.cells, start=1) if c.cell_type == "code" and c.source.strip()]


def output_shape(cell) -> list[tuple]:
    """What a cell shows, without the values: output kinds and mime types. stderr is left out (library
    warnings differ between machines)."""
    shape = []
    for out in cell.get("outputs", []):
        kind = out["output_type"]
        if kind == "stream":
            if out.get("name") == "stdout":
                shape.append(("stream", "stdout"))
        elif kind in ("display_data", "execute_result"):
            shape.append((kind, tuple(sorted(out.get("data", {})))))
        else:
            shape.append((kind,))
    # consecutive stdout chunks merge or split depending on timing: count them once
    merged: list[tuple] = []
    for s in shape:
        if not (s == ("stream", "stdout") and merged and merged[-1] == s):
            merged.append(s)
    return merged


def check_committed(committed, fresh=None) -> list[str]:
    """Problems with a committed notebook: cells never executed or executed out of order, error
    outputs, and (given a fresh execution) cells whose committed outputs differ in shape from it."""
    problems = []
    last = 0
    for number, cell in code_cells(committed):
        count = cell.get("execution_count")
        if count is None:
            problems.append(f"cell {number} was never executed")
            continue
        if count <= last:
            problems.append(f"cell {number} ran out of order (execution count {count} after {last})")
        last = count
        for out in cell.get("outputs", []):
            if out["output_type"] == "error":
                problems.append(f"cell {number} has an error output: {out.get('ename')}: {out.get('evalue')}")
    if fresh is not None:
        fresh_cells = dict(code_cells(fresh))
        for number, cell in code_cells(committed):
            want = output_shape(fresh_cells.get(number, {}))
            have = output_shape(cell)
            if have != want:
                problems.append(f"cell {number} shows {have or 'nothing'} but a fresh run shows {want or 'nothing'}")
    return problems


def execute(path: Path):
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=600, kernel_name="python3", record_timing=False,
                            resources={"metadata": {"path": str(path.parent)}})
    client.execute()
    return nb


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="write the executed outputs back into the files")
    parser.add_argument("paths", nargs="*")
    args = parser.parse_args(argv)

    passed = failed = 0
    for path in notebooks(args.paths):
        committed = nbformat.read(path, as_version=4)
        start = time.perf_counter()
        try:
            fresh = execute(path)
        except CellExecutionError as err:
            failed += 1
            print(f"FAILED {path}: {err}", flush=True)
            continue
        took = time.perf_counter() - start
        if args.write:
            nbformat.write(fresh, path)
            problems = check_committed(fresh)
        else:
            problems = check_committed(committed, fresh)
        if problems:
            failed += 1
            print(f"FAILED {path}: the committed notebook is not a current executed copy "
                  f"(run `make notebooks` and commit):", flush=True)
            for p in problems:
                print(f"       {p}", flush=True)
            continue
        passed += 1
        print(f"{'wrote ' if args.write else 'ok    '} {path} ({took:.1f}s)", flush=True)
    print(f"notebooks: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
