"""One data path: every input kind (pandas, pyarrow Table and RecordBatch, numpy, a dict of columns,
a list of row dicts) reaches feature ingest, quality checks and batch prediction through keel._data
and gives the same result as the DataFrame it stands for."""

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from sklearn.linear_model import LinearRegression

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
