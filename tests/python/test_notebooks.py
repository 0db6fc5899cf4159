"""The committed notebooks carry their outputs (tables and plots show when browsed), and the check that
`make test` runs on them (scripts/run_notebooks.py) refuses unexecuted or stale copies without failing
on values that change between runs, such as timings. Executing the notebooks is `make test-notebooks`;
these tests only read the committed files, so they are quick."""

import copy
import importlib.util
import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def _runner():
    spec = importlib.util.spec_from_file_location("run_notebooks", ROOT / "scripts" / "run_notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


run_notebooks = _runner()


def read(path):
    return nbformat.read(path, as_version=4)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_committed_notebook_is_executed_in_order_without_errors(path):
    assert run_notebooks.check_committed(read(path)) == []


def test_notebooks_show_tables_and_plots():
    kinds = {p.name: {mime for c in read(p).cells for o in c.get("outputs", []) for mime in o.get("data", {})}
             for p in NOTEBOOKS}
    for name in ("01_tracking_and_registry.ipynb", "02_feature_store.ipynb", "04_plugins.ipynb"):
        assert {"image/png", "text/html"} <= kinds[name], name
    assert "image/png" in kinds["03_inference.ipynb"]


def test_unexecuted_notebook_fails_the_check():
    nb = read(NOTEBOOKS[0])
    blank = copy.deepcopy(nb)
    for cell in blank.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    problems = run_notebooks.check_committed(blank, fresh=nb)
    assert problems and all("never executed" in p or "shows nothing but a fresh run shows" in p for p in problems)
    assert any("never executed" in p for p in problems)


def test_check_ignores_changed_values_but_not_missing_outputs_or_errors():
    nb = read(NOTEBOOKS[0])
    numbered = run_notebooks.code_cells(nb)
    # other numbers in every stdout (timings, ids) and other tables: same shape, no problem
    rerun = copy.deepcopy(nb)
    for cell in rerun.cells:
        for out in cell.get("outputs", []):
            if out["output_type"] == "stream":
                out["text"] = re.sub(r"\d", "7", out["text"])
            elif "text/plain" in out.get("data", {}):
                out["data"]["text/plain"] = "something else"
    assert run_notebooks.check_committed(nb, fresh=rerun) == []

    # a plot missing from the committed copy is stale
    number, cell = next((n, c) for n, c in numbered if any("image/png" in o.get("data", {}) for o in c.outputs))
    stale = copy.deepcopy(nb)
    cell = stale.cells[number - 1]
    cell.outputs = [o for o in cell.outputs if "image/png" not in o.get("data", {})]
    assert any(p.startswith(f"cell {number} shows") for p in run_notebooks.check_committed(stale, fresh=nb))

    # an error output, or cells run out of order, fail even without a fresh run
    broken = copy.deepcopy(nb)
    broken.cells[number - 1].outputs.append(nbformat.v4.new_output("error", ename="KeyError", evalue="'x'",
                                                                   traceback=[]))
    assert any("error output: KeyError" in p for p in run_notebooks.check_committed(broken))
    shuffled = copy.deepcopy(nb)
    first, second = numbered[0][0], numbered[1][0]
    shuffled.cells[first - 1].execution_count, shuffled.cells[second - 1].execution_count = 5, 2
    assert any("out of order" in p for p in run_notebooks.check_committed(shuffled))


def test_notebook_02_online_lookup_shows_values_not_nan():
    nb = read(ROOT / "notebooks" / "02_feature_store.ipynb")
    cell = next(c for c in nb.cells if c.cell_type == "code" and "reader.lookup(ids, now_ms=" in c.source)
    table = next(o for o in cell.outputs if o["output_type"] == "execute_result")["data"]["text/plain"]
    first_block = table.split("\n\n")[0]     # pandas wraps wide frames; sessions_7d is in the first block
    rows = [line.split() for line in first_block.splitlines() if re.match(r"^\d+\s", line)]
    assert len(rows) >= 5 and "sessions_7d" in first_block.splitlines()[0]
    sessions = [row[1] for row in rows]
    assert all(v != "NaN" for v in sessions), table   # every player has activity within the TTL
    assert "all NaN at the wall clock: True" in "".join(o.get("text", "") for o in cell.outputs)
