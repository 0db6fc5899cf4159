import json
import os
import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

import keel
from keel.registry import ModelVersion, infer_signature, log_model


class FakeRun:
    """Stands in for a tracking run: what log_model reads from it is .id and its workspace."""

    def __init__(self, ws, run_id=None):
        self.id = run_id or (ws.start_run().id if ws else "r" * 32)  # a source run must exist
        self.workspace = ws


class Doubler:
    def predict(self, x):
        return [2 * v for v in x]


def test_register_numbers_versions_and_keeps_metadata(ws):
    m = ws.models.create("churn", description="who leaves", owner="growth", tags={"team": "g"})
    assert (m.name, m.owner, m.description, m.tags, m.latest_version) == ("churn", "growth", "who leaves",
                                                                          {"team": "g"}, None)
    abc = ws.start_run().id
    v1 = ws.models.register("churn", b"one", run_id=abc)
    v2 = ws.models.register("churn", b"two", signature={"inputs": [{"name": "a", "dtype": "int64"}]},
                            description="second", tags={"k": 1})
    assert (v1.version, v2.version) == (1, 2)
    assert v1.ref == "churn/1" and v1.run_id == abc and v2.run_id is None
    assert v2.signature == {"inputs": [{"name": "a", "dtype": "int64"}]}
    assert v2.feature_names == ["a"]
    assert v2.tags == {"k": "1"} and v2.description == "second" and v2.stage == "None"
    assert v2.created_by == ws.user and v2.created_at > 0
    assert ws.models.get("churn").version == 2  # plain name = latest
    assert ws.models.get("churn/1").digest == v1.digest
    assert ws.models.model("churn").latest_version == 2
    frame = ws.models.versions("churn").to_pandas()
    assert list(frame["version"]) == [1, 2]
    assert str(frame["created_at"].dtype).startswith("datetime64")
    assert list(ws.models.list().to_pandas()["name"]) == ["churn"]
    assert "churn" in ws.models and "ltv" not in ws.models


def test_register_by_digest_and_bad_artifacts(ws):
    digest = ws.put_artifact(b"blob")
    assert ws.models.register("m", digest).digest == digest
    with pytest.raises(keel.NotFound, match="0000000000"):
        ws.models.register("m", "0" * 64)
    with pytest.raises(keel.InvalidArgument, match="bytes or a 64-hex"):
        ws.models.register("m", "not-a-digest")
    with pytest.raises(keel.InvalidArgument, match="'bad/name'"):
        ws.models.register("bad/name", b"x")
    with pytest.raises(keel.AlreadyExists, match="'m'"):
        ws.models.create("m")


def test_aliases_move_delete_and_resolve(ws):
    for payload in (b"1", b"2", b"3"):
        ws.models.register("churn", payload)
    ws.models.set_alias("churn", "champion", version=1)
    ws.models.set_alias("churn", "challenger", version=3)
    assert ws.models.get("churn@champion").version == 1
    moved = ws.models.set_alias("churn", "champion", version=2)
    assert moved.aliases == ["champion"]
    assert ws.models.get("churn@champion").version == 2
    assert ws.models.get("churn/1").aliases == []
    assert ws.models.model("churn").aliases == {"champion": 2, "challenger": 3}
    ws.models.delete_alias("churn", "challenger")
    with pytest.raises(keel.NotFound, match=r"'churn@challenger'.*champion"):
        ws.models.get("churn@challenger")
    with pytest.raises(keel.NotFound, match="no alias 'challenger'"):
        ws.models.delete_alias("churn", "challenger")
    with pytest.raises(keel.NotFound, match="'churn/9'"):
        ws.models.set_alias("churn", "champion", version=9)
    with pytest.raises(keel.InvalidArgument, match="reserved"):
        ws.models.set_alias("churn", "latest", version=1)


@pytest.mark.parametrize("ref, kind, text", [
    ("churn/7", keel.NotFound, "'churn/7' not found: model 'churn' has versions 1 to 1"),
    ("ltv", keel.NotFound, "registered model 'ltv' not found"),
    ("ltv@champion", keel.NotFound, "'ltv@champion'"),
    ("churn/x", keel.InvalidArgument, "'churn/x'"),
    ("churn/0", keel.InvalidArgument, "not a positive whole number"),
    ("churn@", keel.InvalidArgument, "empty alias"),
    ("churn/1@a", keel.InvalidArgument, "both a version and an alias"),
    ("", keel.InvalidArgument, "expected 'name'"),
])
def test_bad_refs_name_the_ref(ws, ref, kind, text):
    ws.models.register("churn", b"x")
    with pytest.raises(kind, match=text.replace("(", r"\(")):
        ws.models.get(ref)


def test_stages_and_audit_events(ws):
    ws.user  # noqa: B018 - recorded on every event
    for payload in (b"1", b"2"):
        ws.models.register("churn", payload)
    ws.models.transition_stage("churn", 1, "Production")
    ws.models.set_alias("churn", "champion", version=1)
    v2 = ws.models.transition_stage("churn", 2, "production", archive_existing=True)
    ws.models.set_alias("churn", "champion", version=2)
    assert v2.stage == "Production"
    assert ws.models.get("churn/1").stage == "Archived"
    with pytest.raises(keel.InvalidArgument, match="'prod'"):
        ws.models.transition_stage("churn", 1, "prod")
    events = ws.models.events("churn")
    assert list(events.columns) == ["at", "model", "action", "subject", "from", "to", "user"]
    assert events[["action", "subject", "from", "to"]].values.tolist() == [
        ["stage", "1", "None", "Production"],
        ["alias", "champion", "", "1"],
        ["stage", "2", "None", "Production"],
        ["stage", "1", "Production", "Archived"],
        ["alias", "champion", "1", "2"],
    ]
    assert set(events["user"]) == {ws.user}
    assert events["at"].is_monotonic_increasing
    assert len(ws.models.events()) == 5


def test_log_model_round_trips_and_infers_signature(ws):
    X = pd.DataFrame({"sessions_7d": [1, 5, 0, 9, 3, 7], "spend_30d": [0.0, 9.5, 0.0, 30.0, 1.0, 12.0]})
    y = [1, 0, 1, 0, 1, 0]
    model = LogisticRegression().fit(X, y)
    run = FakeRun(ws)
    mv = log_model(run, model, name="churn", input_example=X.head(3), description="baseline", tags={"algo": "lr"})
    assert mv.run_id == run.id and mv.version == 1
    assert mv.flavour in ("python", "keel-native")
    assert mv.signature["inputs"] == [{"name": "sessions_7d", "dtype": "int64"},
                                      {"name": "spend_30d", "dtype": "float64"}]
    assert mv.signature["classes"] == [0, 1]
    loaded = ws.models.load("churn/1")
    if mv.flavour == "python":
        np.testing.assert_allclose(loaded.predict_proba(X), model.predict_proba(X))
    # the run produced the version: lineage says so, and the model node carries its owner
    up = ws.lineage.upstream("model:churn/1")
    assert f"run:{run.id}" in up
    assert (up.edges[0]["from"], up.edges[0]["kind"]) == (f"run:{run.id}", "produced")
    assert ws.lineage.node("model:churn")["owner"] == ws.user


def test_signature_from_feature_names_and_arrays():
    class Fitted:
        feature_names_in_ = np.array(["a", "b"], dtype=object)
    assert infer_signature(Fitted()) == {"inputs": [{"name": "a", "dtype": None}, {"name": "b", "dtype": None}]}
    assert infer_signature(Fitted(), np.zeros((2, 2), dtype=np.float32))["inputs"] == [
        {"name": "a", "dtype": "float32"}, {"name": "b", "dtype": "float32"}]
    assert infer_signature(object()) is None
    with pytest.raises(keel.InvalidArgument, match="shape"):
        infer_signature(None, np.zeros((2, 2, 2)))


def test_log_model_any_picklable_object(ws):
    mv = ws.models.log_model(None, Doubler(), name="doubler")
    assert mv.flavour == "python" and mv.run_id is None and mv.signature is None
    assert ws.models.load("doubler").predict([1, 2]) == [2, 4]
    assert mv.load().predict([3]) == [6]
    with pytest.raises(keel.InvalidArgument, match="not picklable"):
        ws.models.log_model(None, lambda x: x, name="doubler")
    assert ws.models.model("doubler").latest_version == 1  # the failed one left nothing behind


def test_log_model_needs_to_find_the_workspace(ws):
    with pytest.raises(keel.InvalidArgument, match="which workspace"):
        log_model(FakeRun(None), Doubler(), name="x")
    r1, r2, r3 = (ws.start_run().id for _ in range(3))
    assert log_model(FakeRun(None, r1), Doubler(), name="x", workspace=ws).run_id == r1
    assert ws.models.log_model(r2, Doubler(), name="x").run_id == r2
    tracked = FakeRun(None, r3)
    tracked.workspace = ws  # as keel.tracking.Run.workspace
    assert log_model(tracked, Doubler(), name="x").run_id == r3
    with pytest.raises(keel.InvalidArgument, match="no string id"):
        ws.models.log_model(object(), Doubler(), name="x")


def test_source_run_must_exist(ws):
    with pytest.raises(keel.NotFound, match="'nope'"):
        ws.models.register("churn", b"one", run_id="nope")
    with pytest.raises(keel.NotFound, match="'nope'"):
        ws.models.log_model("nope", Doubler(), name="churn")
    assert "churn" not in ws.models  # nothing half-written
    with pytest.raises(keel.NotFound):
        ws.lineage.node("run:nope")
    run = ws.start_run()
    assert ws.models.register("churn", b"one", run_id=run.id).run_id == run.id


def test_tampered_model_artifact_raises_corrupt(ws):
    mv = ws.models.register("churn", pickle.dumps(Doubler()))
    path = ws.native.artifact_path(mv.digest)
    os.chmod(path, 0o644)
    with open(path, "r+b") as f:
        first = f.read(1)
        f.seek(0)
        f.write(bytes([first[0] ^ 0xFF]))
    with pytest.raises(keel.Corrupt, match=mv.digest):
        ws.models.load("churn/1")


def test_html_and_json_views(ws):
    mv = ws.models.register("churn", b"x", signature={"inputs": [{"name": "spend", "dtype": "float64"}]})
    ws.models.set_alias("churn", "champion", version=1)
    mv = ws.models.get("churn@champion")
    html = mv._repr_html_()
    assert "<table>" in html and "churn/1" in html and "spend" in html and mv.digest in html
    assert "<table>" in ws.models.versions("churn")._repr_html_()
    assert "champion=1" in ws.models.list()._repr_html_()
    assert json.loads(json.dumps(mv.to_dict()))["aliases"] == ["champion"]
    assert isinstance(mv, ModelVersion) and mv == ws.models.get("churn/1")


def test_concurrent_registration_from_processes(ws, tmp_path):
    script = textwrap.dedent(f"""
        import keel
        ws = keel.open({ws.location!r})
        for i in range(10):
            ws.models.register("churn", b"same bytes")
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script], env=dict(os.environ)) for _ in range(4)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0, 0]
    assert [v.version for v in ws.models.versions("churn")] == list(range(1, 41))


def test_handles_registering_in_turn_get_gap_free_numbers_and_lineage(ws):
    # Each handle numbers its next version from what it registered last; the other handle's version
    # in between makes that guess stale every time, which the INSERT refuses and the retry reads.
    other = keel.open(ws.location)
    runs = [ws.start_run(capture_source=False) for _ in range(8)]
    made = [(ws if i % 2 == 0 else other).models.register("churn", b"m", run_id=run.id, tags={"i": str(i)})
            for i, run in enumerate(runs)]
    assert [v.version for v in made] == list(range(1, 9))
    versions = ws.models.versions("churn")
    assert [(v.version, v.run_id, v.tags) for v in versions] == [
        (i + 1, run.id, {"i": str(i)}) for i, run in enumerate(runs)]
    for i, run in enumerate(runs):  # one edge each way per version: a refused attempt left nothing
        up = ws.lineage.upstream(f"model:churn/{i + 1}", depth=1)
        assert [(e["from"], e["kind"]) for e in up.edges] == [(f"run:{run.id}", "produced")]
        down = ws.lineage.downstream(f"model:churn/{i + 1}", depth=1)
        assert [(e["kind"], e["to"]) for e in down.edges] == [("version_of", "model:churn")]
        node = ws.lineage.node(f"model:churn/{i + 1}")
        assert node["tags"] == {"flavour": "python", "digest": made[i].digest}
    assert len(ws.lineage.upstream("model:churn", depth=1).edges) == 8


def test_a_refused_registration_leaves_the_next_number_free(ws):
    ws.models.register("churn", b"one")
    with pytest.raises(keel.NotFound, match="'nope'"):
        ws.models.register("churn", b"two", run_id="nope")
    with pytest.raises(keel.NotFound, match="artifact"):
        ws.models.register("churn", "0" * 64)
    assert ws.models.register("churn", b"three").version == 2
    assert [v.version for v in ws.models.versions("churn")] == [1, 2]
    assert len(ws.lineage.upstream("model:churn", depth=1).edges) == 2


def test_registering_writes_the_model_node_when_its_info_changes(ws):
    ws.models.create("churn", description="first", owner="ana", tags={"team": "growth"})
    ws.models.register("churn", b"1")
    node = ws.lineage.node("model:churn")
    assert (node["owner"], node["description"], node["tags"]) == ("ana", "first", {"team": "growth"})
    ws.models.native.register_version("churn", ws.put_artifact(b"2"), owner="bo", tags={"tier": "gold"})
    node = ws.lineage.node("model:churn")
    assert (node["owner"], node["description"], node["tags"]) == ("bo", "first", {"team": "growth"})
    model = ws.models.model("churn")
    assert (model.owner, model.latest_version) == ("bo", 2)
    fresh = ws.models.native.register_version("fresh", ws.put_artifact(b"3"), model_description="new one")
    node = ws.lineage.node("model:fresh")
    assert (node["owner"], node["description"]) == (fresh.created_by, "new one")


def test_log_model_prefers_a_native_flavour(ws, monkeypatch):
    import types
    fake = types.ModuleType("keel.inference")
    fake.native_flavour = lambda obj: ("keel-native", b"NATIVE:" + obj.encode(),
                                       {"inputs": [{"name": "a"}], "task": "regression"}) \
        if isinstance(obj, str) else None
    fake.load_predictor = lambda data: ("predictor", bytes(data))
    monkeypatch.setitem(sys.modules, "keel.inference", fake)
    mv = ws.models.log_model(None, "linear", name="native")
    assert mv.flavour == "keel-native" and mv.signature == {"inputs": [{"name": "a"}], "task": "regression"}
    example = pd.DataFrame({"b": [1.5]})
    refined = ws.models.log_model(None, "linear", name="native", input_example=example)
    assert refined.signature == {"inputs": [{"name": "b", "dtype": "float64"}], "task": "regression"}
    assert ws.models.load("native") == ("predictor", b"NATIVE:linear")
    fallback = ws.models.log_model(None, Doubler(), name="native")  # not convertible: pickled
    assert fallback.flavour == "python" and ws.models.load("native/3").predict([1]) == [2]


def test_unknown_flavour_cannot_load(ws, monkeypatch):
    monkeypatch.setitem(sys.modules, "keel.inference", None)  # as if keel.inference were not installed
    ws.models.register("m", b"\x00", flavour="onnx")
    with pytest.raises(keel.InvalidArgument, match=r"flavour .onnx."):
        ws.models.load("m")


def test_version_links_back_to_its_run(ws):
    with ws.start_run(experiment="churn", name="lr") as run:
        run.log_metric("auc", 0.75)
        mv = run.log_model(Doubler(), name="churn")
    assert mv.run_id == run.id
    assert mv.run.metrics["auc"] == pytest.approx(0.75)
    assert ws.models.register("churn", b"x").run is None


def test_concurrent_alias_moves_keep_an_unbroken_audit_chain(ws):
    for payload in (b"1", b"2", b"3", b"4"):
        ws.models.register("churn", payload)
    script = textwrap.dedent(f"""
        import sys
        import keel
        ws = keel.open({ws.location!r})
        me = int(sys.argv[1])
        for i in range(40):
            ws.models.set_alias("churn", "champion", version=1 + (me + i) % 4)
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script, str(p)], env=dict(os.environ)) for p in range(4)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0, 0]
    events = ws.models.events("churn")
    assert len(events) > 4
    # every move starts where the previous one ended: no read-modify-write race lost an update
    assert events["from"].iloc[0] == ""
    assert list(events["from"].iloc[1:]) == list(events["to"].iloc[:-1])
    assert ws.models.get("churn@champion").version == int(events["to"].iloc[-1])


def test_a_model_version_is_the_core_record_read_only(ws):
    mv = ws.models.register("churn", b"m", signature={"inputs": [{"name": "spend", "dtype": "float64"}]})
    assert isinstance(mv, keel._core.ModelVersionRecord)
    assert (mv.name, mv.version, mv.ref, mv.lineage_ref, mv.run_id, mv.stage) == (
        "churn", 1, "churn/1", "model:churn/1", None, "None")
    assert mv.signature == {"inputs": [{"name": "spend", "dtype": "float64"}]} and mv.feature_names == ["spend"]
    with pytest.raises(AttributeError):
        mv.version = 2
    assert mv == ws.models.get("churn/1") and len({mv, ws.models.get("churn")}) == 1


def test_a_registered_model_is_the_core_record_read_only(ws):
    ws.models.create("churn", description="who leaves", owner="ml-team", tags={"team": "growth"})
    ws.models.register("churn", b"m")
    ws.models.set_alias("churn", "champion", version=1)
    model = ws.models.model("churn")
    assert isinstance(model, keel._core.RegisteredModelRecord)
    assert (model.name, model.description, model.owner, model.tags) == ("churn", "who leaves", "ml-team",
                                                                        {"team": "growth"})
    assert model.latest_version == 1 and model.aliases == {"champion": 1} and model.created_by == ws.user
    assert [v.ref for v in model.versions()] == ["churn/1"] and "churn" in ws.models
    assert model.to_dict()["aliases"] == {"champion": 1}
    with pytest.raises(AttributeError):
        model.owner = "someone else"
    assert ws.models.create("empty").latest_version is None

