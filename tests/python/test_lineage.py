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
    assert ws.lineage.upstream("endpoint:churn", as_of=local_naive).refs == ["endpoint:churn", "model:churn/1"]
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
    assert any("feature_view" in label for label in labels)
    assert sum("\n" in label for label in labels) == 4


def test_alias_refs_resolve_now_and_as_of(ws):
    ws.models.register("churn", b"v1", run_id="r1")
    ws.models.register("churn", b"v2", run_id="r2")
    ws.models.set_alias("churn", "champion", version=1)
    time.sleep(0.01)
    on_one = int(time.time() * 1000)
    time.sleep(0.01)
    ws.models.set_alias("churn", "champion", version=2)

    up = ws.lineage.upstream("model:churn@champion")
    assert (up.root, up.ref) == ("model:churn/2", "model:churn@champion")
    assert "run:r2" in up and "run:r1" not in up
    assert "model:churn@champion" in repr(up) and "model:churn/2" in repr(up)
    then = ws.lineage.upstream("model:churn@champion", as_of=on_one)
    assert then.root == "model:churn/1" and "run:r1" in then
    assert ws.lineage.resolve("model:churn@latest") == "model:churn/2"
    assert ws.lineage.downstream("model:churn@champion").root == "model:churn/2"

    ws.lineage.add_edge("model:churn@champion", "serves", "endpoint:churn")  # recorded against the version
    assert ws.lineage.upstream("endpoint:churn").refs == ["endpoint:churn", "model:churn/2", "run:r2"]
    assert not any("@" in ref for ref in ws.lineage.nodes()["ref"])

    with pytest.raises(keel.NotFound, match="no alias 'nobody'"):
        ws.lineage.upstream("model:churn@nobody")
    with pytest.raises(keel.NotFound, match="not set yet"):
        ws.lineage.upstream("model:churn@champion", as_of=1)
    with pytest.raises(keel.InvalidArgument, match="malformed alias"):
        ws.lineage.upstream("model:churn@bad alias")
