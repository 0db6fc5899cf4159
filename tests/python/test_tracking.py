import math
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import keel
from keel.tracking import plot_metric_history

PYTHON_DIR = os.path.join(os.path.dirname(__file__), "..", "..", "python")


def child_env():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.path.abspath(PYTHON_DIR) + os.pathsep + env.get("PYTHONPATH", "")
    return env


# ----------------------------------------------------------------------------------- runs & lifecycle

def test_run_context_manager_finishes_and_records_attributes(ws):
    with ws.start_run(experiment="churn", name="baseline", tags={"team": "growth"}) as run:
        assert run.status == "RUNNING"
        assert len(run.id) == 32 and all(c in "0123456789abcdef" for c in run.id)
        run.log_param("lr", 0.1)
        run.log_metric("auc", 0.8, step=1)
    assert run.status == "FINISHED"
    assert run.end_time >= run.start_time
    got = ws.runs.get(run.id)
    assert got.name == "baseline" and got.experiment == "churn" and got.status == "FINISHED"
    assert got.params == {"lr": "0.1"}
    assert got.metrics == {"auc": 0.8}
    assert got.tags == {"team": "growth"}
    assert got.user == ws.user
    assert got.source  # the pytest entry point
    assert [e["name"] for e in ws.runs.experiments()] == ["churn"]
    assert ws.runs.experiments()[0]["runs"] == 1


def test_failed_run_records_error_and_exception_propagates(ws):
    with pytest.raises(ZeroDivisionError), ws.start_run(experiment="churn") as run:
        _ = 1 / 0
    got = ws.runs.get(run.id)
    assert got.status == "FAILED"
    assert "ZeroDivisionError" in got.error


def test_keyboard_interrupt_marks_run_killed(ws):
    with pytest.raises(KeyboardInterrupt), ws.start_run(experiment="churn") as run:
        raise KeyboardInterrupt
    assert ws.runs.get(run.id).status == "KILLED"


def test_end_inside_block_is_kept_and_bad_status_rejected(ws):
    with ws.start_run() as run:
        with pytest.raises(keel.InvalidArgument, match="RUNNING"):
            run.end("RUNNING")
        run.end("KILLED")
    assert ws.runs.get(run.id).status == "KILLED"
    assert run.experiment == "Default"


def test_log_runs_records_ended_runs_in_bulk_as_one_by_one_logging_would(ws):
    n = 1_234  # statements of 500, 32 and 1 rows all take part
    acc = np.linspace(0.0, 1.0, n)
    ids = ws.runs.log_runs("sweep", [f"trial-{i}" for i in range(n)], params={"model": ["x", "y"] * (n // 2)},
                           metrics={"acc": acc, "loss": 1 - acc}, tags={"team": ["growth"] * n}, step=3,
                           start_time=1_000, end_time=2_000)
    assert len(ids) == len(set(ids)) == n
    top = ws.runs.search(experiment="sweep", filter="params.model = 'y'", order_by=["metrics.acc DESC"],
                         max_results=2)
    assert [r.name for r in top] == [f"trial-{n - 1}", f"trial-{n - 3}"]
    run = ws.runs.get(ids[5])
    assert (run.name, run.status, run.start_time, run.end_time) == ("trial-5", "FINISHED", 1_000, 2_000)
    assert run.params == {"model": "y"} and run.tags == {"team": "growth"}
    assert run.metrics == {"acc": acc[5], "loss": 1 - acc[5]}
    assert list(run.metric_history("acc")["step"]) == [3]
    assert f"run:{ids[5]}" in ws.lineage.downstream("experiment:sweep", depth=1)
    run.log_param("model", "y")  # the same value again is fine, as for any run
    with pytest.raises(keel.Conflict):
        run.log_param("model", "z")


# Text a bulk load must carry exactly (PostgreSQL loads 2,000+ rows with a binary COPY).
AWKWARD = ["tab\there", "new\nline\r\nand return", "back\\slash \\N \\.", "quotes ' \" , ; |", "",
           "snow \u2603 rocket \U0001F680 \u4e2d\u6587", "x" * 5_000]


def test_log_runs_over_the_bulk_threshold_keeps_every_value_exactly(ws):
    n = 3_000
    acc = np.linspace(0.0, 1.0, n)
    acc[:6] = [math.nan, math.inf, -math.inf, -0.0, 5e-324, 1.7976931348623157e308]
    texts = [AWKWARD[i % len(AWKWARD)] for i in range(n)]
    ids = ws.runs.log_runs("bulk", [f"t-{i}" for i in range(n)], params={"note": texts}, metrics={"acc": acc},
                           tags={"team \u2603": texts}, step=7, start_time=1_000, end_time=2_000)
    for i in (*range(len(AWKWARD) + 6), n - 1):
        run = ws.runs.get(ids[i])
        assert run.params == {"note": texts[i]} and run.tags == {"team \u2603": texts[i]}
        got = run.metrics["acc"]
        assert math.isnan(got) if math.isnan(acc[i]) else got == acc[i]
        history = run.metric_history("acc")
        assert list(history["step"]) == [7] and list(history["timestamp"]) == [2_000]
    assert len(ws.runs.search(experiment="bulk", max_results=10_000)) == n


def test_a_big_batch_round_trips_every_point_exactly(ws):
    n = 5_000
    rng = np.random.default_rng(3)
    values = rng.standard_normal(n)
    specials = [math.nan, math.inf, -math.inf, 0.0, 5e-324, -1.7976931348623157e308, 1 / 3]
    values[:len(specials)] = specials
    steps = rng.integers(-2**62, 2**62, n)
    steps[:2] = [-2**63, 2**63 - 1]
    stamps = np.arange(n, dtype=np.int64) * 1_000 + 1_700_000_000_000
    keys = [(AWKWARD[i % len(AWKWARD)] or "empty")[:250] for i in range(n)]  # keys: 250 characters at most
    run = ws.start_run()
    run.log_batch(keys, values, steps=steps, timestamps=stamps)
    for key in set(keys):
        mine = sorted((int(s), int(t), v) for k, s, t, v in zip(keys, steps, stamps, values) if k == key)
        history = run.metric_history(key)
        assert list(history["step"]) == [s for s, _, _ in mine]
        assert list(history["timestamp"]) == [t for _, t, _ in mine]
        np.testing.assert_array_equal(history["value"].to_numpy(), np.array([v for _, _, v in mine]))
        best = max(mine, key=lambda p: (p[0], p[1]))
        got = run.metrics[key]
        assert got == best[2] or (math.isnan(got) and math.isnan(best[2]))


def test_log_runs_refuses_ragged_columns_and_writes_nothing(ws):
    with pytest.raises(keel.InvalidArgument, match="param 'model' has 1 values for 2 runs"):
        ws.runs.log_runs("sweep", ["a", "b"], params={"model": ["x"]})
    with pytest.raises(keel.InvalidArgument, match="status 'RUNNING'"):
        ws.runs.log_runs("sweep", ["a"], status="RUNNING")
    assert len(ws.runs.search()) == 0


def test_nested_runs(ws):
    with ws.start_run(experiment="sweep", name="parent") as parent:
        for lr in (0.1, 0.2):
            with ws.start_run(experiment="sweep", name=f"lr={lr}", parent=parent) as child:
                child.log_param("lr", lr)
    children = [r for r in ws.runs.search(experiment="sweep") if r.parent_id == parent.id]
    assert sorted(r.name for r in children) == ["lr=0.1", "lr=0.2"]
    assert ws.runs.get(parent.id).parent_id is None
    assert sorted(r.name for r in parent.children()) == ["lr=0.1", "lr=0.2"]
    assert len(ws.runs.search(filter=f"parent_id = '{parent.id}' and params.lr = '0.2'")) == 1
    with pytest.raises(keel.NotFound, match="nope"):
        ws.start_run(experiment="sweep", parent="nope")


def test_get_unknown_run_is_not_found_naming_id(ws):
    with pytest.raises(keel.NotFound, match="0123abcd"):
        ws.runs.get("0123abcd")


def test_git_commit_captured_in_a_checkout(ws, tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-c", "user.email=a@b", "-c", "user.name=a"]
    subprocess.run(git + ["init", "-q"], cwd=repo, check=True)
    (repo / "train.py").write_text("print(1)\n")
    subprocess.run(git + ["add", "train.py"], cwd=repo, check=True)
    subprocess.run(git + ["commit", "-q", "-m", "x"], cwd=repo, check=True)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True).stdout.strip()
    monkeypatch.setattr(sys.modules["__main__"], "__file__", str(repo / "train.py"), raising=False)
    run = ws.start_run(experiment="git")
    assert run.git_commit == head and run.git_dirty is False
    assert ws.runs.get(run.id).source == str(repo / "train.py")


# ------------------------------------------------------------------------------------- params & tags

def test_param_conflict_names_key_and_both_values(ws):
    run = ws.start_run()
    run.log_params({"lr": 0.1, "depth": 6})
    run.log_param("lr", "0.1")  # same value again is fine
    with pytest.raises(keel.Conflict) as err:
        run.log_param("lr", 0.2)
    msg = str(err.value)
    assert "'lr'" in msg and "'0.1'" in msg and "'0.2'" in msg
    assert run.params == {"lr": "0.1", "depth": "6"}
    # a batch with one conflicting param writes none of it
    with pytest.raises(keel.Conflict):
        run.log_params({"new": 1, "depth": 7})
    assert "new" not in ws.runs.get(run.id).params


def test_tags_set_overwrite_delete(ws):
    run = ws.start_run(tags={"a": 1})
    run.set_tag("a", 2)
    run.set_tags({"b": "x"})
    assert run.tags == {"a": "2", "b": "x"}
    run.delete_tag("a")
    assert run.tags == {"b": "x"}
    with pytest.raises(keel.NotFound, match="'a'"):
        run.delete_tag("a")


def test_empty_key_is_invalid(ws):
    run = ws.start_run()
    with pytest.raises(keel.InvalidArgument, match="empty"):
        run.log_metric("", 1.0)


# ------------------------------------------------------------------------------------------ metrics

def test_metric_history_and_latest_rule(ws):
    run = ws.start_run()
    run.log_metric("loss", 1.0, step=0, timestamp=100)
    run.log_metric("loss", 0.5, step=2, timestamp=50)
    run.log_metric("loss", 0.7, step=1, timestamp=300)  # later but lower step: not latest
    run.log_metric("loss", 0.4, step=2, timestamp=60)   # same step, later timestamp: latest
    assert run.metrics["loss"] == 0.4
    hist = run.metric_history("loss")
    assert list(hist.columns) == ["step", "value", "timestamp"]
    assert hist["step"].tolist() == [0, 1, 2, 2]
    assert hist["value"].tolist() == [1.0, 0.7, 0.5, 0.4]
    assert run.metric_history("never").empty


def test_nan_and_inf_round_trip(ws):
    run = ws.start_run()
    run.log_metric("nan", float("nan"))
    run.log_metric("pinf", float("inf"))
    run.log_metric("ninf", float("-inf"))
    run.log_batch("mixed", [1.0, float("nan"), float("inf"), -float("inf")], steps=[0, 1, 2, 3])
    got = ws.runs.get(run.id).metrics
    assert math.isnan(got["nan"])
    assert got["pinf"] == math.inf and got["ninf"] == -math.inf
    assert got["mixed"] == -math.inf
    values = run.metric_history("mixed")["value"].tolist()
    assert values[0] == 1.0 and math.isnan(values[1]) and values[2] == math.inf and values[3] == -math.inf
    df = ws.runs.search().to_pandas()
    assert math.isnan(df.loc[0, "metrics.nan"])


def test_log_metrics_and_batch(ws):
    run = ws.start_run()
    run.log_metrics({"a": 1, "b": 2.5}, step=3)
    assert run.metrics == {"a": 1.0, "b": 2.5}
    assert run.metric_history("a")["step"].tolist() == [3]
    values = np.linspace(0, 1, 1000)
    run.log_batch("curve", values, steps=np.arange(1000))
    hist = run.metric_history("curve")
    assert len(hist) == 1000 and hist["value"].iloc[-1] == 1.0
    assert run.metrics["curve"] == 1.0
    run.log_batch(["x", "y"], [1.0, 2.0], steps=[1, 1])
    assert run.metrics["x"] == 1.0 and run.metrics["y"] == 2.0
    with pytest.raises(keel.InvalidArgument, match="3 steps for 2 values"):
        run.log_batch("z", [1.0, 2.0], steps=[1, 2, 3])


# ---------------------------------------------------------------------------------------- artifacts

def test_artifacts_file_and_directory_round_trip(ws, tmp_path):
    (tmp_path / "model.txt").write_text("weights")
    plots = tmp_path / "plots"
    (plots / "sub").mkdir(parents=True)
    (plots / "roc.csv").write_text("fpr,tpr\n0,0\n")
    (plots / "sub" / "pr.csv").write_text("p,r\n")
    run = ws.start_run()
    entries = run.log_artifact(tmp_path / "model.txt")
    assert entries[0]["path"] == "model.txt" and entries[0]["size"] == 7
    run.log_artifact(plots, artifact_path="eval")
    paths = [a["path"] for a in run.artifacts()]
    assert paths == ["eval/plots/roc.csv", "eval/plots/sub/pr.csv", "model.txt"]
    dest = tmp_path / "out"
    run.download_artifacts(dest)
    assert (dest / "model.txt").read_text() == "weights"
    assert (dest / "eval/plots/sub/pr.csv").read_text() == "p,r\n"
    # lineage side effects
    digest = entries[0]["digest"]
    down = ws.native  # the lineage binding is read through the native graph
    graph = keel._core.LineageGraph(down)
    edges = graph.downstream(f"artifact:{digest}")["edges"]
    assert {"from": f"artifact:{digest}", "kind": "logged_by", "to": f"run:{run.id}"} in [
        {k: e[k] for k in ("from", "kind", "to")} for e in edges]
    exp_edges = graph.downstream(f"experiment:{run.experiment}")["edges"]
    assert any(e["to"] == f"run:{run.id}" and e["kind"] == "contains" for e in exp_edges)


def test_tampered_artifact_download_raises_corrupt(ws, tmp_path):
    (tmp_path / "m.bin").write_bytes(b"x" * 100)
    run = ws.start_run()
    digest = run.log_artifact(tmp_path / "m.bin")[0]["digest"]
    blob = ws.native.artifact_path(digest)
    os.chmod(blob, 0o644)
    with open(blob, "r+b") as f:
        f.write(b"y")
    with pytest.raises(keel.Corrupt):
        run.download_artifacts(tmp_path / "dl")
    assert not (tmp_path / "dl" / "m.bin").exists()


def test_artifact_paths_stay_inside_the_run(ws, tmp_path):
    (tmp_path / "f.txt").write_text("x")
    run = ws.start_run()
    with pytest.raises(keel.InvalidArgument, match=r"'\.\.'"):
        run.log_artifact(tmp_path / "f.txt", artifact_path="../../escape")
    assert run.log_artifact(tmp_path / "f.txt", artifact_path="/abs/./dir/")[0]["path"] == "abs/dir/f.txt"
    run.download_artifacts(tmp_path / "dl")
    assert (tmp_path / "dl" / "abs" / "dir" / "f.txt").read_text() == "x"


def test_log_missing_artifact_is_not_found(ws, tmp_path):
    run = ws.start_run()
    with pytest.raises(keel.NotFound, match="nothing-here"):
        run.log_artifact(tmp_path / "nothing-here")


# ------------------------------------------------------------------------------------------- search

@pytest.fixture
def grid(ws):
    runs = []
    for i, (lr, team, auc) in enumerate([("0.1", "growth", 0.91), ("0.1", "growth", 0.75), ("0.2", "growth", 0.85),
                                         ("0.1", "core", 0.95), ("0.3", "growth", float("nan"))]):
        with ws.start_run(experiment="churn", name=f"run{i}", tags={"team": team}) as run:
            run.log_param("lr", lr)
            run.log_metric("auc", auc)
            run.log_metric("val loss", 1 - auc if auc == auc else 1.0)
        runs.append(run)
    with ws.start_run(experiment="other", name="elsewhere") as run:
        run.log_metric("auc", 0.99)
    return runs


def test_search_filter_order_and_pandas(ws, grid):
    found = ws.runs.search(experiment="churn",
                           filter="metrics.auc > 0.8 and params.lr = '0.1' and tags.team = 'growth' "
                                  "and status = 'FINISHED'",
                           order_by=["metrics.auc DESC"])
    assert [r.name for r in found] == ["run0"]
    all_churn = ws.runs.search(experiment="churn", order_by=["metrics.auc DESC"])
    # NaN sorts after every number, in either direction
    assert [r.name for r in all_churn] == ["run3", "run0", "run2", "run1", "run4"]
    asc = ws.runs.search(experiment="churn", order_by="metrics.auc ASC")
    assert [r.name for r in asc] == ["run1", "run2", "run0", "run3", "run4"]
    df = all_churn.to_pandas()
    assert list(df.columns[:6]) == ["run_id", "experiment", "name", "status", "start_time", "end_time"]
    assert {"params.lr", "metrics.auc", "metrics.val loss", "tags.team"} <= set(df.columns)
    assert df["metrics.auc"].iloc[0] == 0.95
    assert str(df["start_time"].dtype).startswith("datetime64")
    assert "<table>" in all_churn._repr_html_() and "<table>" in grid[0]._repr_html_()


def test_search_operators(ws, grid):
    def names(f, **kw):
        return sorted(r.name for r in ws.runs.search(experiment="churn", filter=f, **kw))
    assert names("metrics.`val loss` < 0.12") == ["run0", "run3"]
    assert names("params.lr != '0.1'") == ["run2", "run4"]
    assert names("tags.team LIKE 'gro%'") == ["run0", "run1", "run2", "run4"]
    assert names("tags.team LIKE 'GRO%'") == []
    assert names("tags.team ILIKE 'GRO%'") == ["run0", "run1", "run2", "run4"]
    assert names("name = 'run2'") == ["run2"]
    assert names("attributes.run_name IN ('run1', 'run3')") == ["run1", "run3"]
    assert names("metrics.auc >= 0.85 AND metrics.auc <= 0.91") == ["run0", "run2"]
    assert names(f"start_time >= {grid[0].start_time}") == [f"run{i}" for i in range(5)]
    assert names(f"user = '{ws.user}'") == [f"run{i}" for i in range(5)]
    assert len(ws.runs.search()) == 6
    assert len(ws.runs.search(experiment=["churn", "other"], max_results=2)) == 2
    assert [r.name for r in ws.runs.search(experiment="churn", order_by=["name"], max_results=2, offset=1)] == \
        ["run1", "run2"]
    assert [r.name for r in ws.runs.search(experiment="churn", order_by=["params.lr DESC", "name"])][:2] == \
        ["run4", "run2"]


@pytest.mark.parametrize("bad, token", [
    ("metrics.auc >> 0.8", "'>'"),
    ("metrics.auc > 0.8 and", "'<end of filter>'"),
    ("metrics.auc > 'high'", "''high''"),
    ("params.lr = 0.1", "'0.1'"),
    ("foo.bar = '1'", "'foo'"),
    ("metrics.auc > 0.8 or params.lr = '1'", "'or'"),
    ("status = 'FINISHED", "''FINISHED'"),
    ("metrics.auc LIKE '%1'", "'LIKE'"),
])
def test_malformed_filter_points_at_bad_token(ws, grid, bad, token):
    with pytest.raises(keel.InvalidArgument) as err:
        ws.runs.search(filter=bad)
    assert f"token {token}" in str(err.value)
    assert "position" in str(err.value)


def test_bad_order_by_and_unknown_experiment(ws, grid):
    with pytest.raises(keel.InvalidArgument, match="SIDEWAYS"):
        ws.runs.search(order_by=["metrics.auc SIDEWAYS"])
    with pytest.raises(keel.NotFound, match="nope"):
        ws.runs.search(experiment="nope")
    with pytest.raises(keel.InvalidArgument, match="max_results"):
        ws.runs.search(max_results=0)


def test_filter_values_are_bound_not_pasted(ws, grid):
    # A quote-laden value is data, not SQL.
    assert len(ws.runs.search(filter="params.lr = '0.1'' OR 1=1 --'")) == 0


def test_plot_metric_history(ws, grid):
    import matplotlib
    matplotlib.use("Agg")
    run = grid[0]
    run.log_batch("loss", [1.0, 0.5, 0.25], steps=[0, 1, 2])
    ax = plot_metric_history(ws.runs.search(experiment="churn"), "loss")
    assert len(ax.get_lines()) == 1
    assert ax.get_lines()[0].get_ydata().tolist() == [1.0, 0.5, 0.25]


def test_plot_metric_history_of_an_unlogged_metric_says_so(ws, grid):
    import matplotlib
    matplotlib.use("Agg")
    for runs in (ws.runs.search(experiment="churn"), [], grid[0]):
        ax = plot_metric_history(runs, "no_such_metric")
        assert ax.get_lines() == []
        assert "no points" in ax.get_title()
        assert any("no run here has logged 'no_such_metric'" in t.get_text() for t in ax.texts)


# ------------------------------------------------------------------------------ several processes

WORKER = textwrap.dedent("""
    import sys, keel
    ws = keel.open(sys.argv[1])
    run = ws.runs.get(sys.argv[2])
    worker = int(sys.argv[3])
    for i in range(int(sys.argv[4])):
        run.log_metric("m", float(i), step=worker * 1_000_000 + i)
""")


def test_four_processes_logging_concurrently_lose_nothing(ws):
    run = ws.start_run(experiment="concurrency")
    n = 10_000
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, ws.location, run.id, str(w), str(n)], env=child_env())
             for w in range(4)]
    for p in procs:
        assert p.wait(timeout=300) == 0
    hist = keel.open(ws.location).runs.get(run.id).metric_history("m")
    assert len(hist) == 4 * n
    assert hist["step"].nunique() == 4 * n
    assert run.refresh().metrics["m"] == n - 1


BATCH_WORKER = textwrap.dedent("""
    import sys, numpy as np, keel
    ws = keel.open(sys.argv[1])
    run = ws.runs.get(sys.argv[2])
    worker, batches, size = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    for b in range(batches):
        steps = worker * 1_000_000 + b * size + np.arange(size, dtype=np.int64)
        run.log_batch("m", steps.astype(np.float64), steps=steps)
""")


def test_four_processes_logging_batches_concurrently_lose_nothing(ws):
    run = ws.start_run(experiment="concurrency")
    batches, size = 4, 5_000  # each batch a COPY on PostgreSQL
    procs = [subprocess.Popen([sys.executable, "-c", BATCH_WORKER, ws.location, run.id, str(w), str(batches),
                               str(size)], env=child_env()) for w in range(4)]
    for p in procs:
        assert p.wait(timeout=300) == 0
    hist = keel.open(ws.location).runs.get(run.id).metric_history("m")
    assert len(hist) == 4 * batches * size
    assert hist["step"].nunique() == len(hist)
    assert (hist["value"].to_numpy() == hist["step"].to_numpy()).all()
    assert run.refresh().metrics["m"] == 3 * 1_000_000 + batches * size - 1


KILLED_WORKER = textwrap.dedent("""
    import sys, keel
    ws = keel.open(sys.argv[1])
    run = ws.runs.get(sys.argv[2])
    i = 0
    while True:
        run.log_metric("m", float(i), step=i)
        if i % 7 == 0:
            run.log_params({f"p{i}": i})
        print(i, flush=True)   # acknowledged: the write above has returned
        i += 1
""")


def test_sigkill_mid_write_keeps_every_acknowledged_write(ws):
    run = ws.start_run(experiment="crash")
    proc = subprocess.Popen([sys.executable, "-c", KILLED_WORKER, ws.location, run.id], stdout=subprocess.PIPE,
                            env=child_env(), text=True)
    acked = -1
    deadline = time.time() + 60
    while acked < 3000 and time.time() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        acked = int(line)
    os.kill(proc.pid, signal.SIGKILL)
    rest = proc.stdout.read()  # lines printed before the kill landed
    proc.wait()
    for line in rest.splitlines():
        acked = int(line)
    assert acked >= 3000, "the child should have been killed while writing"
    reopened = keel.open(ws.location)
    got = reopened.runs.get(run.id)
    steps = set(got.metric_history("m")["step"].tolist())
    assert set(range(acked + 1)) <= steps
    assert all(f"p{i}" in got.params for i in range(0, acked + 1, 7))
    # the workspace still takes writes
    got.log_metric("after", 1.0)
    assert reopened.runs.get(run.id).metrics["after"] == 1.0


# ------------------------------------------------------------------- SIGTERM and runs whose process died

RUN_UNTIL_SIGNALLED = textwrap.dedent("""
    import signal, sys, time, keel
    mode = sys.argv[2]
    if mode == "own-handler":
        def stop(signum, frame):
            print("own handler ran", flush=True)
            sys.exit(7)
        signal.signal(signal.SIGTERM, stop)
    elif mode == "ignore":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    ws = keel.open(sys.argv[1])
    with ws.start_run(experiment="ci", name="job") as run:
        print(run.id, flush=True)
        deadline = time.time() + float(sys.argv[3])
        while time.time() < deadline:
            time.sleep(0.02)
        run.log_metric("done", 1.0)
    print("finished", flush=True)
""")


def start_child(ws, mode, seconds=60, **env):
    proc = subprocess.Popen([sys.executable, "-c", RUN_UNTIL_SIGNALLED, ws.location, mode, str(seconds)],
                            stdout=subprocess.PIPE, text=True, env={**child_env(), **env})
    run_id = proc.stdout.readline().strip()
    assert len(run_id) == 32, run_id
    return proc, run_id


def test_sigterm_ends_the_run_killed_and_the_process_still_dies_of_it(ws):
    proc, run_id = start_child(ws, "default")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == -signal.SIGTERM  # chained to the default action
    run = ws.runs.get(run_id)
    assert run.status == "KILLED" and run.end_time is not None
    assert "SIGTERM" in run.error


def test_sigterm_chains_to_the_programs_own_handler(ws):
    proc, run_id = start_child(ws, "own-handler")
    proc.send_signal(signal.SIGTERM)
    out = proc.stdout.read()
    assert proc.wait(timeout=30) == 7 and "own handler ran" in out
    assert ws.runs.get(run_id).status == "KILLED"


def test_a_process_that_ignores_sigterm_keeps_its_run(ws):
    proc, run_id = start_child(ws, "ignore", seconds=1.5)
    proc.send_signal(signal.SIGTERM)
    out = proc.stdout.read()
    assert proc.wait(timeout=30) == 0 and "finished" in out
    assert ws.runs.get(run_id).status == "FINISHED"


def test_sigterm_handler_is_installed_only_while_a_run_is_active(ws):
    code = textwrap.dedent("""
        import signal, sys, threading, keel
        ws = keel.open(sys.argv[1])
        before = signal.getsignal(signal.SIGTERM)
        outer = ws.start_run()
        inner = ws.start_run(parent=outer)
        assert signal.getsignal(signal.SIGTERM) is not before
        inner.end()
        assert signal.getsignal(signal.SIGTERM) is not before, "outer is still active"
        outer.end()
        assert signal.getsignal(signal.SIGTERM) is before
        worker = threading.Thread(target=lambda: ws.start_run().end())  # no signal calls off the main thread
        worker.start()
        worker.join()
        assert signal.getsignal(signal.SIGTERM) is before
        print("ok")
    """)
    out = subprocess.run([sys.executable, "-c", code, ws.location], capture_output=True, text=True, env=child_env(),
                         timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_a_forked_worker_killed_by_sigterm_leaves_the_parents_run_alone(ws):
    code = textwrap.dedent("""
        import os, signal, sys, keel
        ws = keel.open(sys.argv[1])
        run = ws.start_run(name="parent")
        child = os.fork()
        if child == 0:  # a pool worker: pool.terminate() sends it SIGTERM
            os.kill(os.getpid(), signal.SIGTERM)
            os._exit(0)  # not reached: the default action ends it
        _, status = os.waitpid(child, 0)
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGTERM
        print(ws.runs.get(run.id).status)
        run.end()
    """)
    out = subprocess.run([sys.executable, "-c", code, ws.location], capture_output=True, text=True, env=child_env(),
                         timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "RUNNING", out.stderr


def test_sigkill_leaves_a_stale_run_that_close_stale_ends(ws):
    proc, dead_id = start_child(ws, "default", KEEL_HEARTBEAT_SECONDS="0.1")
    time.sleep(0.5)
    beat = ws.runs.get(dead_id).process
    assert beat["pid"] == proc.pid and beat["host"] == os.uname().nodename
    assert beat["heartbeat_at"] > ws.runs.get(dead_id).start_time  # the heartbeat thread beat
    alive = ws.start_run(name="still working")
    assert ws.runs.stale() == []  # both processes are alive

    proc.kill()
    proc.wait(timeout=30)
    [stale] = ws.runs.stale()
    assert stale["id"] == dead_id and stale["process"]["pid"] == proc.pid
    assert f"process {proc.pid}" in stale["reason"] and "has exited" in stale["reason"]
    assert ws.runs.close_stale(dry_run=True)[0]["id"] == dead_id
    assert ws.runs.get(dead_id).status == "RUNNING"  # a dry run changes nothing

    [closed] = ws.runs.close_stale()
    run = ws.runs.get(dead_id)
    assert closed["status"] == run.status == "KILLED"
    assert run.end_time == stale["process"]["heartbeat_at"]  # the last sign of life
    assert "closed as stale" in run.error and "has exited" in run.error
    assert ws.runs.close_stale() == [] and ws.runs.get(alive.id).status == "RUNNING"
    alive.end()


def test_stale_on_another_host_goes_by_heartbeat_and_a_reused_pid_is_seen(ws, run_sql):
    remote, reused = ws.start_run(name="remote"), ws.start_run(name="reused")
    old = int(time.time() * 1000) - 600_000
    run_sql(ws, f"UPDATE tracking_run_processes SET host = 'gpu-box-7', heartbeat_at = {old} WHERE run = "
                f"(SELECT id FROM tracking_runs WHERE run_id = '{remote.id}'); "
                "UPDATE tracking_run_processes SET process_start = process_start + 1 WHERE run = "
                f"(SELECT id FROM tracking_runs WHERE run_id = '{reused.id}')")
    reasons = {r["id"]: r["reason"] for r in ws.runs.stale(heartbeat_timeout=300)}
    assert "no heartbeat from process" in reasons[remote.id] and "gpu-box-7" in reasons[remote.id]
    assert "another process" in reasons[reused.id]
    assert remote.id not in {r["id"] for r in ws.runs.stale(heartbeat_timeout=3600)}
    with pytest.raises(keel.InvalidArgument, match="positive"):
        ws.runs.stale(heartbeat_timeout=0)
    remote.end()
    reused.end()


def test_log_input_writes_the_consumed_edge_and_resolves_aliases(ws):
    ws.lineage.add_edge("dataset:raw", "feeds", "model:churn/1")
    ws.models.register("churn", b"m1")
    ws.models.set_alias("churn", "champion", version=1)
    run = ws.start_run(name="consumer")
    assert run.log_input("training_set:ts1") == "training_set:ts1"
    assert run.log_input("model:churn@champion") == "model:churn@champion"  # the version it points at now
    up = ws.lineage.upstream(f"run:{run.id}", depth=1)
    consumed = {e["from"] for e in up.edges if e["kind"] == "consumed"}
    assert consumed == {"training_set:ts1", "model:churn/1"}
    with pytest.raises(keel.InvalidArgument):
        run.log_input("not a ref")
    with pytest.raises(TypeError, match="lineage ref"):
        run.log_input(42)


def test_runs_cross_as_read_only_core_records(ws):
    with ws.start_run(name="r", tags={"team": "growth"}) as run:
        assert run.tags == {"team": "growth"} and run.params == {}  # known without a read
        run.log_param("lr", 0.1)
        assert run.params == {"lr": "0.1"}
    assert isinstance(run._info, keel._core.RunInfo)
    with pytest.raises(AttributeError):
        run._info.status = "RUNNING"
    assert run.status == "FINISHED" and run.end_time >= run.start_time
    again = ws.runs.get(run.id)
    assert again.to_dict() == run.to_dict()
    assert again.to_dict()["git_dirty"] in (None, True, False) and again.to_dict()["error"] is None
