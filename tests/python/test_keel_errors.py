"""Bad input from a notebook is a Keel error naming the value, never a library's error or a huge
allocation (issue 10, items 10 and 11)."""
import numpy as np
import pandas as pd
import pytest

import keel
from keel.inference import FactorizationModel, convert

T0 = pd.Timestamp("2026-01-01", tz="UTC")


# ---- lineage as_of

@pytest.mark.parametrize("bad", ["garbage", "2026-13-45", "NaT", "", float("nan"), float("inf"), True, [1], object()])
def test_lineage_as_of_garbage_is_invalid_argument_naming_the_forms(ws, bad):
    ws.lineage.add_edge("dataset:a", "feeds", "model:m/1")
    with pytest.raises(keel.InvalidArgument, match="ISO 8601"):
        ws.lineage.upstream("model:m/1", as_of=bad)


def test_lineage_as_of_good_forms_still_work(ws):
    ws.lineage.add_edge("dataset:a", "feeds", "model:m/1")
    for good in ("2999-01-01T00:00Z", pd.Timestamp("2999-01-01", tz="UTC"), 32503680000000, None):
        assert "dataset:a" in ws.lineage.upstream("model:m/1", as_of=good)
    with pytest.raises(keel.NotFound, match="did not exist yet"):
        ws.lineage.upstream("model:m/1", as_of="2000-01-01T00:00:00+00:00")


# ---- feature schemas and frames

@pytest.fixture
def fs(ws):
    ws.features.entity("player", join_keys=["player_id"])
    return ws.features


@pytest.mark.parametrize("bad", ["vector[100000000000]", "vector[70000]", "vector[0]"])
def test_huge_vector_type_is_invalid_argument_with_the_limit(fs, bad):
    with pytest.raises(keel.InvalidArgument, match="between 1 and 65,536"):
        fs.feature_view("emb", entities=["player"], schema={"v": bad})
    with pytest.raises(keel.InvalidArgument, match="65,536"):
        keel.Vector(10**11)
    assert fs.feature_view("emb", entities=["player"], schema={"v": "vector[65536]"}).schema == {"v": "vector[65536]"}


def test_duplicate_dataframe_columns_in_ingest_name_the_column(fs):
    fv = fs.feature_view("activity", entities=["player"], schema={"spend": "float64"})
    df = pd.DataFrame([[1, T0, 1.0, 2.0]], columns=["player_id", "event_timestamp", "spend", "spend"])
    with pytest.raises(keel.InvalidArgument, match="column 'spend' appears more than once"):
        fv.ingest(df)
    import pyarrow as pa
    table = pa.Table.from_arrays([pa.array([1]), pa.array([T0]), pa.array([1.0]), pa.array([2.0])],
                                 names=["player_id", "event_timestamp", "spend", "spend"])
    with pytest.raises(keel.InvalidArgument, match="column 'spend' appears more than once"):
        fv.ingest(table)
    assert fv.to_pandas().empty  # nothing half-written


def test_duplicate_dataframe_columns_in_predict_name_the_column():
    from sklearn.linear_model import LinearRegression
    X = pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": [0.0, 1.0, 0.0]})
    p = convert(LinearRegression().fit(X, [1.0, 2.0, 3.0]))
    dup = pd.DataFrame([[1.0, 0.0, 5.0]], columns=["a", "b", "a"])
    with pytest.raises(keel.InvalidArgument, match="column 'a' appears more than once"):
        p.predict(dup)


# ---- recommend k

def test_recommend_caps_k_at_the_item_count_and_refuses_k_below_one():
    rng = np.random.default_rng(0)
    p = FactorizationModel(rng.normal(size=(3, 2)), rng.normal(size=(7, 2)))
    items, scores = p.recommend([0, 1, 2], k=10**9)  # was users x 1e9 slots (about 16 GB)
    assert items.shape == (3, 7) and scores.shape == (3, 7)
    assert sorted(items[0].tolist()) == list(range(7))
    assert p.recommend(0, k=3)[0].shape == (3,)
    for bad in (0, -1, 2.5, "3", None, True):
        with pytest.raises(keel.InvalidArgument, match="k, the number of items per user"):
            p.recommend([0], k=bad)


def test_recommend_with_string_ids_on_a_model_without_ids_is_invalid_argument():
    rng = np.random.default_rng(0)
    p = FactorizationModel(rng.normal(size=(3, 2)), rng.normal(size=(7, 2)))
    with pytest.raises(keel.InvalidArgument, match="names no users"):
        p.recommend(["alice"], k=2)


@pytest.mark.parametrize("name", ["a/b", "..", ".hidden", "nul\0byte", "x" * 10_000])
def test_entity_and_view_names_follow_the_one_name_rule(ws, name):
    with pytest.raises(keel.InvalidArgument, match="malformed"):
        ws.features.entity(name, join_keys=["player_id"])
    ws.features.entity("player", join_keys=["player_id"])
    with pytest.raises(keel.InvalidArgument, match="malformed"):
        ws.features.feature_view(name, entities=["player"], schema={"spend_30d": "float64"})
    assert ws.features.list().to_pandas().empty


def test_every_error_kind_of_the_core_is_a_python_class_with_the_cli_exit_code():
    from keel import _core, errors
    for name in errors.__all__[1:]:  # after KeelError, every kind the core names
        cls = getattr(keel, name)
        assert issubclass(cls, keel.KeelError) and cls.__name__ == name
        assert _core.error_exit_code(name) == cls.exit_code, name
    assert keel.Unavailable.exit_code == 10
