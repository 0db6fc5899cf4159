import time
from datetime import datetime, timezone

import pytest

import keel


def build_chain(ws):
    ws.lineage.add_node("feature_view:activity", owner="data-eng")
    ws.lineage.add_edge("feature_view:activity", "feeds", "training_set:ts1")
    ws.lineage.add_edge("training_set:ts1", "consumed", "run:r1")
    ws.lineage.add_edge("run:r1", "produced", "model:churn/1")


def test_upstream_and_downstream(ws):
    build_chain(ws)
    up = ws.lineage.upstream("model:churn/1")
    assert up.refs == ["model:churn/1", "run:r1", "training_set:ts1", "feature_view:activity"]
    frame = up.to_pandas()
    assert list(frame["kind"]) == ["produced", "consumed", "feeds"]
    assert "feature_view:activity" not in ws.lineage.downstream("training_set:ts1")
    down = ws.lineage.downstream("feature_view:activity", depth=1)
    assert down.refs == ["feature_view:activity", "training_set:ts1"]
    assert "<table>" in up._repr_html_()
    assert ws.lineage.node("feature_view:activity")["owner"] == "data-eng"


def test_as_of_sees_the_past(ws):
    ws.lineage.add_edge("model:churn/1", "serves", "endpoint:churn")
    time.sleep(0.01)
    before = int(time.time() * 1000)
    time.sleep(0.01)
    ws.lineage.remove_edge("model:churn/1", "serves", "endpoint:churn")
    ws.lineage.add_edge("model:churn/2", "serves", "endpoint:churn")
    assert ws.lineage.upstream("endpoint:churn").refs == ["endpoint:churn", "model:churn/2"]
    assert ws.lineage.upstream("endpoint:churn", as_of=before).refs == ["endpoint:churn", "model:churn/1"]
    iso = datetime.fromtimestamp(before / 1000, tz=timezone.utc).isoformat(timespec="milliseconds")
    assert ws.lineage.upstream("endpoint:churn", as_of=iso).refs == ["endpoint:churn", "model:churn/1"]
    local_naive = datetime.fromtimestamp(before / 1000).strftime("%Y-%m-%d %H:%M:%S.%f")
    with pytest.raises(keel.InvalidArgument, match="no time zone"):  # UTC or local? Keel does not guess
        ws.lineage.upstream("endpoint:churn", as_of=local_naive)
    with pytest.raises(keel.NotFound, match="already ended"):
        ws.lineage.remove_edge("model:churn/1", "serves", "endpoint:churn")
    with pytest.raises(keel.NotFound, match="did not exist yet"):
        ws.lineage.upstream("endpoint:churn", as_of="2001-01-01T00:00:00Z")


def test_bad_and_unknown_refs(ws):
    with pytest.raises(keel.InvalidArgument, match="kind:name"):
        ws.lineage.upstream("churn")
    with pytest.raises(keel.NotFound, match="model:nope/1"):
        ws.lineage.downstream("model:nope/1")


def test_plot_draws_every_node(ws):
    import matplotlib
    matplotlib.use("Agg")
    build_chain(ws)
    ax = ws.lineage.upstream("model:churn/1").plot()
    labels = [t.get_text() for t in ax.texts]
    assert any(label.startswith("feature view\nactivity") for label in labels)
    assert sum("\n" in label for label in labels) == 4


def build_twenty(ws):
    """20 nodes upstream of endpoint:churn: sources -> views -> training sets -> named runs -> models."""
    add = ws.lineage.add_edge
    add("dataset:warehouse.events_clickstream_daily", "ingested_into", "feature_view:player_activity_30d")
    add("dataset:warehouse.payments", "ingested_into", "feature_view:player_spend")
    add("dataset:warehouse.installs", "ingested_into", "feature_view:device_installs")
    add("dataset:s3://partner-feeds/device_catalog/2026-11", "ingested_into", "feature_view:device_installs")
    for fv in ("player_activity_30d", "player_spend"):
        add("entity:player", "keys", f"feature_view:{fv}")
    sets = ["training_set:3fa9c0d1e2b34c5d8e7f601a2b3c4d5e", "training_set:9b8a7c6d5e4f30211a2b3c4d5e6f7a8b"]
    for fv in ("player_activity_30d", "player_spend", "device_installs"):
        add(f"feature_view:{fv}", "feeds", sets[0])
    for fv in ("player_activity_30d", "player_spend"):
        add(f"feature_view:{fv}", "feeds", sets[1])
    runs = []
    for i, name in enumerate(["lgbm-baseline", "lgbm-tuned-lr0.05-leaves63", "logreg-l2", "xgb-depth8"]):
        with ws.start_run(experiment="churn", name=name) as run:
            run.log_input(sets[i // 2])
        ws.models.register("churn", f"v{i}".encode(), run_id=run.id)
        add(f"model:churn/{i + 1}", "serves", "endpoint:churn")
        runs.append(run)
    return runs


def test_plot_of_twenty_nodes_is_readable(ws, tmp_path):
    import matplotlib
    matplotlib.use("Agg")
    runs = build_twenty(ws)
    view = ws.lineage.upstream("endpoint:churn")
    assert len(view.nodes) == 20
    ax = view.plot()
    fig = ax.figure
    fig.savefig(tmp_path / "lineage.png", dpi=100)  # looked at by eye while tuning the layout
    renderer = fig.canvas.get_renderer()

    node_texts = [t for t in ax.texts if "\n" in t.get_text()]
    edge_texts = [t for t in ax.texts if t.get_text() and "\n" not in t.get_text()]
    assert len(node_texts) == 20 and len(edge_texts) >= 20
    shown = " ".join(t.get_text() for t in node_texts)
    assert all(run.name in shown.replace("\n", "") for run in runs)  # runs by name ...
    assert not any(run.id in shown for run in runs)                   # ... not by 32-hex id
    assert "9b8a7c6d…" in shown                                        # other long ids shortened

    boxes = [t.get_bbox_patch().get_window_extent(renderer) for t in node_texts + edge_texts]
    figure_box = fig.bbox
    for i, a in enumerate(boxes):
        assert a.x0 >= figure_box.x0 and a.y0 >= figure_box.y0 and a.x1 <= figure_box.x1 and a.y1 <= figure_box.y1, \
            f"label {i} clipped"
        for b in boxes[i + 1:]:
            assert not a.overlaps(b), "two labels overlap"
    for extra in (fig._suptitle, *fig.legends):  # the title and the legend fit too, clear of the graph
        box = extra.get_window_extent(renderer)
        assert box.x0 >= 0 and box.x1 <= figure_box.x1
        assert not any(box.overlaps(b) for b in boxes)
    legend = {t.get_text() for t in fig.legends[0].get_texts()}
    assert {"run", "model", "feature view", "training set", "dataset", "entity", "endpoint"} <= legend
    width, height = fig.get_size_inches()
    assert width > 10 and height > 3  # sized from the graph, not a fixed small canvas


def test_alias_refs_resolve_now_and_as_of(ws):
    with ws.start_run(experiment="churn") as first:
        pass
    with ws.start_run(experiment="churn") as second:
        pass
    r1, r2 = f"run:{first.id}", f"run:{second.id}"
    ws.models.register("churn", b"v1", run_id=first.id)
    ws.models.register("churn", b"v2", run_id=second.id)
    ws.models.set_alias("churn", "champion", version=1)
    time.sleep(0.01)
    on_one = int(time.time() * 1000)
    time.sleep(0.01)
    ws.models.set_alias("churn", "champion", version=2)

    up = ws.lineage.upstream("model:churn@champion")
    assert (up.root, up.ref) == ("model:churn/2", "model:churn@champion")
    assert r2 in up and r1 not in up
    assert "model:churn@champion" in repr(up) and "model:churn/2" in repr(up)
    then = ws.lineage.upstream("model:churn@champion", as_of=on_one)
    assert then.root == "model:churn/1" and r1 in then
    assert ws.lineage.resolve("model:churn@latest") == "model:churn/2"
    assert ws.lineage.downstream("model:churn@champion").root == "model:churn/2"

    ws.lineage.add_edge("model:churn@champion", "serves", "endpoint:churn")  # recorded against the version
    assert ws.lineage.upstream("endpoint:churn").refs == ["endpoint:churn", "model:churn/2", r2, "experiment:churn"]
    assert not any("@" in ref for ref in ws.lineage.nodes()["ref"])

    with pytest.raises(keel.NotFound, match="no alias 'nobody'"):
        ws.lineage.upstream("model:churn@nobody")
    with pytest.raises(keel.NotFound, match="not set yet"):
        ws.lineage.upstream("model:churn@champion", as_of=1)
    with pytest.raises(keel.InvalidArgument, match="malformed alias"):
        ws.lineage.upstream("model:churn@bad alias")
