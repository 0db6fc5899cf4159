"""Taking definitions out of a workspace (what `keel apply --prune` calls): retiring feature views,
removing entities, training specs (feature services) and removing endpoints."""

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LinearRegression

import keel

T0 = pd.Timestamp("2026-01-01", tz="UTC")


@pytest.fixture
def fs(ws):
    fs = ws.features
    fs.entity("player", join_keys=["player_id"])
    fv = fs.feature_view("activity", entities=["player"], schema={"sessions": "int64", "spend": "float64"})
    fv.ingest(pd.DataFrame({"player_id": [1, 2, 3], "event_timestamp": T0, "sessions": [1, 2, 3],
                            "spend": [10.0, 20.0, 30.0]}))
    fs.materialize("activity")
    return fs


def labels():
    return pd.DataFrame({"player_id": [3, 1, 2], "event_timestamp": T0 + pd.Timedelta(days=1), "y": [1, 0, 1]})


# --- retiring views ------------------------------------------------------------------------------

def test_a_retired_view_is_refused_everywhere_and_leaves_the_catalog(fs):
    fs.retire_view("activity")
    for call in (lambda: fs.view("activity"), lambda: fs.feature_view("activity"),
                 lambda: fs.view("activity", 1), lambda: fs.materialize("activity"),
                 lambda: fs.get_online(["activity:spend"], player_id=[1]),
                 lambda: fs.online_reader(["activity:spend"]),
                 lambda: fs.training_set(labels(), features=["activity:spend"])):
        with pytest.raises(keel.NotFound, match=r"feature view 'activity' was retired by .* UTC; define it again"):
            call()
    assert fs.list() == []
    with pytest.raises(keel.NotFound, match=r"already retired .* live views: none"):
        fs.retire_view("activity")
    with pytest.raises(keel.NotFound, match=r"feature view 'nope' not found \(known: none\)"):
        fs.retire_view("nope")


def test_a_cached_numpy_reader_stops_serving_a_retired_view(fs):
    assert fs.get_online(["activity:spend"], player_id=[2], as_numpy=True)[0, 0] == 20.0
    fs.retire_view("activity")
    with pytest.raises(keel.NotFound, match="was retired"):
        fs.get_online(["activity:spend"], player_id=[2], as_numpy=True)


def test_a_recorded_training_set_rebuilds_identically_after_retirement(fs):
    built = fs.training_set(labels(), features=["activity:sessions", "activity:spend"])
    fs.retire_view("activity")
    fs.remove_entity("player")  # the view version keeps its join keys
    again = fs.training_set(id=built.id)
    pd.testing.assert_frame_equal(again.to_pandas(), built.to_pandas())
    assert again.view_versions == {"activity": 1}


def test_defining_a_retired_view_again_brings_it_back(fs):
    fs.retire_view("activity")
    back = fs.feature_view("activity", entities=["player"], schema={"sessions": "int64", "spend": "float64"})
    assert back.version == 1 and len(back.to_pandas()) == 3      # compatible: its data again
    assert [i.spec.name for i in fs.list()] == ["activity"]
    fs.retire_view("activity")
    newer = fs.feature_view("activity", entities=["player"], schema={"spend": "string"})
    assert newer.version == 2 and len(newer.to_pandas()) == 0    # incompatible: a new version


def test_an_entity_is_removed_only_once_no_live_view_uses_it(fs):
    with pytest.raises(keel.InvalidArgument, match=r"used by live feature view\(s\) activity: retire them first"):
        fs.remove_entity("player")
    with pytest.raises(keel.NotFound, match=r"entity 'team' not found \(known: player\)"):
        fs.remove_entity("team")
    fs.retire_view("activity")
    fs.remove_entity("player")
    assert fs.entities() == []
    with pytest.raises(keel.NotFound):
        fs.entity("player")


# --- training specs ------------------------------------------------------------------------------

def test_training_specs_are_revised_listed_removed_and_brought_back(fs):
    spec = fs.training_spec("churn", ["activity:sessions", "activity:spend"], description="churn inputs",
                            owner="ds", tags={"team": "growth"})
    assert (spec.name, spec.revision, spec.owner, spec.tags) == ("churn", 1, "ds", {"team": "growth"})
    assert spec.features == ["activity:sessions", "activity:spend"]
    assert "churn r1" in repr(spec) and "Training spec churn r1" in spec._repr_html_()
    same = fs.training_spec("churn", ["activity:sessions", "activity:spend"], description="churn inputs",
                            owner="ds", tags={"team": "growth"})
    assert same.revision == 1                                   # unchanged: no new revision
    assert fs.training_spec("churn", ["activity:spend"], owner="ds").revision == 2
    assert fs.training_spec("churn").features == ["activity:spend"]
    assert [s.name for s in fs.training_specs()] == ["churn"]
    fs.remove_training_spec("churn")
    assert fs.training_specs() == []
    with pytest.raises(keel.NotFound, match="training spec 'churn' was removed by"):
        fs.training_spec("churn")
    assert fs.training_spec("churn", ["activity:spend"], owner="ds").revision == 3


def test_a_training_spec_names_what_is_wrong(fs):
    with pytest.raises(keel.NotFound, match=r"feature 'activity:visits'.*has no column 'visits' \(its columns: "
                                            r"sessions, spend\)"):
        fs.training_spec("churn", ["activity:visits"])
    with pytest.raises(keel.NotFound, match=r"feature view 'profile' not found \(known: activity\)"):
        fs.training_spec("churn", ["profile:age"])
    with pytest.raises(keel.InvalidArgument, match="appears twice"):
        fs.training_spec("churn", ["activity:spend", "activity:spend"])
    with pytest.raises(keel.InvalidArgument, match="at least one feature"):
        fs.training_spec("churn", [])
    with pytest.raises(keel.InvalidArgument, match="training spec"):
        fs.training_spec("no spaces", ["activity:spend"])
    with pytest.raises(keel.NotFound, match=r"training spec 'nope' not found \(known: none\)"):
        fs.training_spec("nope")


def test_a_training_set_is_built_from_a_spec(fs):
    spec = fs.training_spec("churn", ["activity:spend"])
    by_spec = fs.training_set(labels(), spec="churn")
    by_list = fs.training_set(labels(), features=["activity:spend"])
    assert by_spec.id == by_list.id
    assert list(by_spec.to_pandas().spend) == [30.0, 10.0, 20.0]
    assert fs.training_set(labels(), spec=spec).id == by_list.id
    with pytest.raises(keel.InvalidArgument, match=r"features=\[...\] or spec=, not both"):
        fs.training_set(labels(), features=["activity:spend"], spec="churn")
    with pytest.raises(keel.InvalidArgument, match="spec="):
        fs.training_set(labels())
    with pytest.raises(keel.NotFound, match="training spec 'other' not found"):
        fs.training_set(labels(), spec="other")


# --- removing endpoints --------------------------------------------------------------------------

@pytest.fixture
def served(fs):
    ws = fs.workspace
    x = pd.DataFrame({"sessions": [0.0, 1.0, 0.0], "spend": [0.0, 0.0, 1.0]})
    ws.models.log_model(None, LinearRegression().fit(x, np.array([0.0, 1.0, 2.0])), "churn")
    return ws


def test_a_removed_endpoint_is_refused_until_it_is_defined_again(served):
    ws = served
    ep = ws.endpoint("churn", model="churn/1", features=["activity:sessions", "activity:spend"], refresh_interval=0)
    assert ep.predict({"player_id": 1})["prediction"] == pytest.approx(1 + 2 * 10.0)
    ep.flush()
    ws.remove_endpoint("churn")
    with pytest.raises(keel.NotFound, match="endpoint 'churn' was removed by"):
        ep.predict({"player_id": 1})
    with pytest.raises(keel.NotFound, match="was removed by"):
        ws.endpoint("churn")
    with pytest.raises(keel.NotFound, match="was removed by"):
        ws.remove_endpoint("churn")
    assert len(ep.assignments()) == 1                    # history stays
    assert list(ep.revisions().revision) == [1]
    assert ws.lineage.upstream("endpoint:churn", depth=1).edges == []   # feeds and serves edges ended
    again = ws.endpoint("churn", model="churn/1", features=["activity:sessions", "activity:spend"])
    assert again.revision == 2
    assert {e["kind"] for e in ws.lineage.upstream("endpoint:churn", depth=1).edges} == {"feeds", "serves"}
    assert ep.predict({"player_id": 1})["prediction"] == pytest.approx(21.0)
    assert ep.revision == 2
