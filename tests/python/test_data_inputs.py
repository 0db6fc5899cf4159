"""One data path: every input kind (pandas, pyarrow Table and RecordBatch, numpy, a dict of columns,
a list of row dicts) reaches feature ingest, quality checks and batch prediction through keel._data
and gives the same result as the DataFrame it stands for."""

from datetime import time
from decimal import Decimal

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LinearRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OrdinalEncoder

import keel
from keel import _data

T0 = pd.Timestamp("2024-01-01", tz="UTC")


def base_frame():
    return pd.DataFrame({"player_id": [1, 2, 3], "event_timestamp": [T0, T0 + pd.Timedelta("1h"), T0],
                         "spend": [1.5, np.nan, 3.0], "country": ["fr", "de", None]})


def as_kind(df: pd.DataFrame, kind: str):
    if kind == "pandas":
        return df
    if kind == "table":
        return pa.Table.from_pandas(df, preserve_index=False)
    if kind == "chunked":  # two record batches: the core reads a stream of them as one batch
        t = pa.Table.from_pandas(df, preserve_index=False)
        return pa.Table.from_batches(t.slice(0, 1).to_batches() + t.slice(1).to_batches())
    if kind == "batch":
        return pa.RecordBatch.from_pandas(df, preserve_index=False)
    if kind == "dict":
        return {c: df[c].tolist() for c in df.columns}
    if kind == "rows":
        return df.to_dict("records")
    raise AssertionError(kind)


KINDS = ["pandas", "table", "chunked", "batch", "dict", "rows"]


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_ingests_the_same_rows(ws, kind):
    ws.features.entity("player", join_keys=["player_id"])
    fv = ws.features.feature_view("spend", entities=["player"], schema={"spend": "float64", "country": "string"})
    out = fv.ingest(as_kind(base_frame(), kind))
    assert out["rows"] == 3
    got = fv.to_pandas().sort_values("player_id").reset_index(drop=True)
    assert got["player_id"].tolist() == [1, 2, 3]
    assert got["spend"].tolist()[0] == 1.5 and np.isnan(got["spend"].tolist()[1])
    assert got["country"].tolist()[:2] == ["fr", "de"] and got["country"].isna().tolist() == [False, False, True]
    assert got["event_timestamp"].tolist()[1] == T0 + pd.Timedelta("1h")


def test_numpy_rows_with_names_ingest(ws):
    ws.features.entity("player", join_keys=["player_id"])
    fv = ws.features.feature_view("scores", entities=["player"], schema={"a": "float64", "b": "int64"},
                                  event_timestamp_column="ts")
    x = np.array([[1, 2.5, 3], [2, 0.5, 4]])
    table = _data.to_table(x, names=["player_id", "a", "b"])
    table = table.append_column("ts", pa.array([T0, T0], type=pa.timestamp("ms", tz="UTC")))
    fv.ingest(table)
    got = fv.to_pandas().sort_values("player_id")
    assert got["b"].tolist() == [3, 4] and got["a"].tolist() == [2.5, 0.5]


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_gives_the_same_quality_report(kind):
    rules = [keel.quality.rule("plugins/quality/not_null.lua", column="spend", severity="warn"),
             keel.quality.rule("plugins/quality/range.lua", column="spend", min=0, max=2),
             keel.quality.rule("plugins/quality/allowed_values.lua", column="country", values=["fr", "de"])]
    expected = keel.quality.check(base_frame(), rules).to_pandas()
    got = keel.quality.check(as_kind(base_frame(), kind), rules).to_pandas()
    pd.testing.assert_frame_equal(got, expected)
    assert expected["status"].tolist()[1:] == ["fail", "pass"]  # 3.0 > 2; a null country is no offender


def test_numpy_quality_checks_name_columns_by_position():
    report = keel.quality.check(np.array([[1.0, -1.0], [2.0, 3.0]]),
                                [keel.quality.rule("plugins/quality/range.lua", column="1", min=0)])
    assert not report.passed and report.rows == 2


@pytest.mark.parametrize("kind", ["pandas", "table", "batch", "dict", "rows"])
def test_every_kind_gives_the_same_batch_predictions(ws, kind):
    x = pd.DataFrame(np.eye(2), columns=["a", "b"])
    ws.models.log_model(None, LinearRegression(fit_intercept=False).fit(x, [1.0, 10.0]), "lin")
    ep = ws.endpoint("lin", model="lin/1", inputs=["a", "b"])
    requests = pd.DataFrame({"a": [1.0, 0.0, 2.0], "b": [0.0, 1.0, 3.0]})
    out = ep.predict_batch(as_kind(requests, kind))
    preds = out["prediction"].tolist() if isinstance(out, pd.DataFrame) else [r["prediction"] for r in out]
    assert preds == pytest.approx([1.0, 10.0, 32.0])


def test_predictor_takes_arrow_and_rows_like_a_frame(ws):
    x = pd.DataFrame(np.eye(2), columns=["a", "b"])
    mv = ws.models.log_model(None, LinearRegression(fit_intercept=False).fit(x, [1.0, 10.0]), "lin")
    p = ws.models.load(f"lin/{mv.version}")
    frame = pd.DataFrame({"b": [1.0, 3.0], "a": [0.0, 2.0]})  # by name, not position
    want = p.predict(frame)
    assert want.tolist() == pytest.approx([10.0, 32.0])
    assert p.predict(pa.Table.from_pandas(frame)).tolist() == pytest.approx(want.tolist())
    assert p.predict(frame.to_dict("records")).tolist() == pytest.approx(want.tolist())


def test_unknown_input_kinds_and_duplicate_columns_are_refused():
    with pytest.raises(keel.InvalidArgument, match="a pandas DataFrame, a pyarrow Table or RecordBatch, a 2-D numpy "
                                                   "array, a dict of columns or a list of row dicts, not int"):
        _data.to_table(5)
    with pytest.raises(keel.InvalidArgument, match="column 'a' appears more than once"):
        _data.to_table(pd.DataFrame([[1, 2]], columns=["a", "a"]))
    with pytest.raises(keel.InvalidArgument, match="the dict's columns do not form a table"):
        _data.to_table({"a": [1, 2], "b": [1]})
    with pytest.raises(keel.InvalidArgument, match="2 names for a numpy array of 3 columns"):
        _data.to_table(np.zeros((2, 3)), names=["a", "b"])


def test_types_the_core_cannot_take_are_named_with_the_fix(ws):
    ws.features.entity("player", join_keys=["player_id"])
    fv = ws.features.feature_view("spend", entities=["player"], schema={"spend": "float64"})
    table = pa.table({"player_id": [1], "event_timestamp": pa.array([T0], type=pa.timestamp("ms", tz="UTC")),
                      "spend": pa.array([b"x"], type=pa.binary())})
    with pytest.raises(keel.InvalidArgument, match="column 'spend' has type binary, which Keel cannot take: decode"):
        fv.ingest(table)
    assert fv.to_pandas().empty


# --- Arrow straight into the native predictor (core/inference/column_rows.cpp) --------------------

def test_arrow_input_predicts_like_the_frame_it_stands_for(ws):
    rng = np.random.default_rng(3)
    n = 200
    df = pd.DataFrame({"region": rng.choice(["eu", "na", "apac"], n), "level": rng.integers(1, 60, n),
                       "spend": rng.exponential(20, n), "tier": rng.integers(0, 3, n).astype(float)})
    encode = ColumnTransformer([("ordinal", OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1),
                                 ["region"])], remainder="passthrough")
    pipe = make_pipeline(encode, LinearRegression()).fit(df, df["spend"] * 2 + df["level"] - df["tier"])
    p = keel.convert(pipe)
    test = df.iloc[:50][["tier", "spend", "level", "region"]].copy()  # by name, not position
    test.iloc[:3, 3] = "mars"  # an unknown label
    test.iloc[3:5, 1] = np.nan
    test["tier"] = pd.Categorical.from_codes(test["tier"].astype(int), ["lo", "mid", "hi"])  # codes, like a frame's
    want = p.predict(test)
    table = pa.Table.from_pandas(test, preserve_index=False)
    assert pa.types.is_dictionary(table.schema.field("tier").type)
    chunked = pa.Table.from_batches(table.slice(0, 7).to_batches() + table.slice(7).to_batches())
    labels_as_categories = table.set_column(3, "region", table.column("region").dictionary_encode())
    for arrow in (table, chunked, table.to_batches()[0], labels_as_categories):
        np.testing.assert_allclose(p.predict(arrow), want, rtol=1e-12)
    np.testing.assert_allclose(p.predict(table.slice(10, 5)), want[10:15], rtol=1e-12)
    assert p.predict(table.slice(0, 0)).shape == (0,)


def test_arrow_input_missing_or_wrong_typed_columns_are_named(ws):
    x = pd.DataFrame({"a": [1.0, 0.0], "b": [0.0, 1.0]})
    p = keel.convert(LinearRegression().fit(x, [1.0, 2.0]))
    with pytest.raises(keel.InvalidArgument, match=r"the data lacks the column\(s\) \['b'\]: the model reads "
                                                   r"\['a', 'b'\]"):
        p.predict(pa.table({"a": [1.0]}))
    with pytest.raises(keel.InvalidArgument, match="column 'b' has type string, which the model cannot read as "
                                                   "numbers: cast it to a numeric type first"):
        p.predict(pa.table({"a": [1.0], "b": ["x"]}))
    with pytest.raises(keel.InvalidArgument, match=r"column 'b' has type timestamp\[ms, tz=UTC\]"):
        p.predict(pa.table({"a": [1.0], "b": pa.array([T0], pa.timestamp("ms", tz="UTC"))}))
    # Integers, bools and nulls read as numbers, as a frame would give them.
    got = p.predict(pa.table({"a": pa.array([1, None], pa.int32()), "b": pa.array([False, True])}))
    assert got[0] == pytest.approx(p.predict(pd.DataFrame({"a": [1.0], "b": [0.0]}))[0])
    assert np.isnan(got[1]) or got[1] == pytest.approx(p.predict({"a": np.nan, "b": 1.0}))


# --- what quality rules see of any Arrow column (core/plugins/quality_input.cpp) ------------------

def test_quality_checks_read_every_scalar_type_and_leave_out_the_rest():
    table = pa.table({
        "price": pa.array([Decimal("1.10"), Decimal("-2.50"), None], pa.decimal128(5, 2)),
        "half": pa.array(np.array([1.5, 2.0, -0.25], dtype=np.float16)),
        "tier": pa.array(["a", "b", None]).dictionary_encode(),
        "code": pa.array([10, 20, 10]).dictionary_encode(),
        "at": pa.array([time(1, 2, 3, 4000), None, time(0, 0)], pa.time64("us")),
        "took": pa.array([-3723, 5, None], pa.duration("s")),
        "label": pa.array(["short", None, "a string past twelve bytes"], pa.string_view()),
        "blob": pa.array([b"x", b"y", b"z"]),
        "point": pa.array([{"x": 1}, {"x": 2}, {"x": 3}]),
        "emb": pa.array([[1.0, 2.0]] * 3, pa.list_(pa.float32(), 2)),
    })
    rules = [keel.quality.rule("plugins/quality/range.lua", column="price", min=-2.5, max=1.1),
             keel.quality.rule("plugins/quality/range.lua", column="half", min=-0.25, max=2),
             keel.quality.rule("plugins/quality/allowed_values.lua", column="tier", values=["a", "b"]),
             keel.quality.rule("plugins/quality/range.lua", column="code", min=10, max=20),
             keel.quality.rule("plugins/quality/allowed_values.lua", column="at",
                               values=["01:02:03.004000", "00:00:00.000000"]),
             keel.quality.rule("plugins/quality/allowed_values.lua", column="took", values=["-3723", "5"]),
             keel.quality.rule("plugins/quality/allowed_values.lua", column="label",
                               values=["short", "a string past twelve bytes"])]
    report = keel.quality.check(table, rules)
    assert report.passed, report.summary()
    assert set(keel.quality.profile(table)) == {"price", "half", "tier", "code", "at", "took", "label"}
    failing = keel.quality.check(table, [keel.quality.rule("plugins/quality/range.lua", column="price", max=1)])
    assert not failing.passed and failing.results[0]["observed"] == 1  # 1.10 is above 1; the null is no offender


def test_ingest_rules_see_the_batch_typed_as_the_view(ws):
    ws.features.entity("player", join_keys=["player_id"])
    fv = ws.features.feature_view("spend", entities=["player"], schema={"spend": "float64", "emb": "vector[2]"})
    fv.add_rule("plugins/quality/freshness.lua", column="event_timestamp", max_age="36500d")
    fv.add_rule("plugins/quality/range.lua", column="spend", min=0)
    fv.ingest(pd.DataFrame({"player_id": [1, 2], "event_timestamp": ["2026-01-01T00:00:00Z", "2026-01-01T01:00+01:00"],
                            "spend": [1, 2], "emb": [[1.0, 2.0]] * 2}))  # ISO text and ints, typed by the view
    assert fv.quality_history()["status"].tolist() == ["pass", "pass"]
    assert fv.to_pandas()["event_timestamp"].tolist() == [pd.Timestamp("2026-01-01", tz="UTC")] * 2
    with pytest.raises(keel.quality.DataQualityError, match=r"range \[spend\] fail"):
        fv.ingest(pd.DataFrame({"player_id": [3], "event_timestamp": ["2026-01-02T00:00:00Z"], "spend": [-1],
                                "emb": [[0.0, 0.0]]}))
    assert len(fv.to_pandas()) == 2
