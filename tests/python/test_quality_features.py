"""Quality rules on feature-view ingest: all or nothing, history, data issues downstream."""

import pandas as pd
import pytest

from keel import quality

T0 = pd.Timestamp("2026-01-01", tz="UTC")


@pytest.fixture
def fv(ws):
    ws.features.entity("player", join_keys=["player_id"])
    return ws.features.feature_view("activity", entities=["player"], ttl="10d", owner="data-eng",
                                    schema={"sessions": "int64", "spend": "float64", "country": "string",
                                            "emb": "vector[2]"})


def batch(spend, country="DE", n=4):
    return pd.DataFrame({"player_id": range(n), "event_timestamp": [T0] * n, "sessions": range(n),
                         "spend": [spend] * n, "country": [country] * n, "emb": [[1.0, 2.0]] * n})


def test_ingest_runs_rules_first_and_rejects_with_every_failure(ws, fv):
    fv.add_rule("plugins/quality/range.lua", column="spend", min=0, severity="error")
    fv.add_rule("plugins/quality/allowed_values.lua", column="country", values=["DE", "FR"], severity="error")
    fv.add_rule("plugins/quality/row_count.lua", min=10, severity="warn")
    assert fv.ingest(batch(1.0))["rows"] == 4
    with pytest.raises(quality.DataQualityError) as err:
        fv.ingest(batch(-1.0, country="XX"))
    msg = str(err.value)
    assert "range [spend] fail" in msg and "allowed_values [country] fail" in msg
    assert len(fv.to_pandas()) == 4  # nothing of the rejected batch was written
    hist = fv.quality_history()
    assert set(hist.batch) == {1, 2} and list(hist[hist.batch == 2].accepted.unique()) == [False]
    # row_count is a warning: stored, and it opened an issue, but never rejected a batch
    assert set(fv.quality.issues().rule) == {"range", "allowed_values", "row_count"}
    assert set(ws.lineage.issues(fv.lineage_ref).rule) == {"range", "allowed_values", "row_count"}


def test_views_without_rules_ingest_as_before(fv):
    assert fv.ingest(batch(-5.0))["rows"] == 4
    assert fv.quality_history().empty
