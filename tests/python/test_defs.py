"""Definitions as code: keel.defs.plan / apply and `keel plan` / `keel apply`."""

import json
import os
import subprocess
import sys
import textwrap

import pandas as pd
import pytest
from sklearn.linear_model import LinearRegression

import keel
from keel import defs
from keel.cli import main as cli

T0 = pd.Timestamp.now(tz="UTC").floor("D") - pd.Timedelta(days=1)  # within every TTL used here

PLAYERS = """
from keel import defs

player = defs.Entity("player", join_keys=["player_id"], description="A player of the game")
activity = defs.FeatureView(
    "player_activity", entities=[player], ttl="30d", owner="data-eng", description="Sessions and spend",
    schema={"sessions_7d": "int64", "spend_30d": "float64"},
    rules=[defs.rule("plugins/quality/range.lua", column="spend_30d", min=0)])
"""

TRAINING = """
from keel import defs
from players import activity

churn_training = defs.TrainingSpec("churn_training", features=[activity["sessions_7d"], "player_activity:spend_30d"],
                                   description="What churn models train on")
"""

ENDPOINT = """
from keel import defs
from training import churn_training

churn = defs.Endpoint("churn", model="churn@champion", features=[churn_training])
"""


def write(folder, files: dict) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(textwrap.dedent(text))
    return str(folder)


@pytest.fixture
def repo(tmp_path):
    return write(tmp_path / "defs", {"players.py": PLAYERS, "training.py": TRAINING})


def with_model(ws):
    x = pd.DataFrame({"sessions_7d": [0.0, 1.0, 0.0], "spend_30d": [0.0, 0.0, 1.0]})
    mv = ws.models.log_model(None, LinearRegression().fit(x, [0.0, 1.0, 2.0]), "churn")
    ws.models.set_alias("churn", "champion", mv.version)
    return ws


def snapshot(ws) -> dict:
    """Everything definitions touch, to show that a plan or a failed apply changed nothing."""
    return {"entities": sorted(e.name for e in ws.features.entities()),
            "views": sorted((v.spec.name, v.spec.version) for v in ws.features.list()),
            "specs": sorted(s.name for s in ws.features.training_specs()),
            "endpoints": sorted(keel._core.EndpointStore(ws.native).names()),
            "rules": len(keel.quality.checks(ws, "feature_view:player_activity").rules())}


# ------------------------------------------------------------------------------ plan and apply

def test_plan_lists_what_apply_would_create_and_changes_nothing(ws, repo):
    before = snapshot(ws)
    plan = defs.plan(ws, repo)
    assert [(c.action, c.ref) for c in plan.changes] == [
        ("create", "entity:player"), ("create", "feature_view:player_activity"),
        ("create", "training_spec:churn_training")]
    assert plan.exit_code == 1 and not plan.applied
    assert any("+ rule range(column='spend_30d', min=0) [error]" in d for d in plan.changes[1].details)
    assert plan.changes[0].source.endswith("players.py:4")  # the line that declared it
    assert snapshot(ws) == before


def test_apply_twice_changes_nothing_the_second_time(ws, repo):
    first = defs.apply(ws, repo)
    assert first.applied and first.counts()["create"] == 3
    fv = ws.features.view("player_activity")
    assert fv.owner == "data-eng" and fv.ttl == pd.Timedelta(days=30) and fv.description == "Sessions and spend"
    assert [r.label for r in fv.quality.rules()] == ["range"]
    assert ws.features.training_spec("churn_training").features == [
        "player_activity:sessions_7d", "player_activity:spend_30d"]
    second = defs.apply(ws, repo)
    assert second.changes == [] and len(second.unchanged) == 3
    plan = defs.plan(ws, repo)
    assert plan.exit_code == 0 and "Nothing to do" in str(plan)
    assert len(fv.quality.rules()) == 1 and ws.features.view("player_activity").version == 1


def test_a_compatible_change_updates_in_place_and_keeps_the_data(ws, repo, tmp_path):
    defs.apply(ws, repo)
    ws.features.view("player_activity").ingest(pd.DataFrame(
        {"player_id": [1, 2], "event_timestamp": T0, "sessions_7d": [3, 4], "spend_30d": [1.0, 2.0]}))
    write(tmp_path / "defs", {"players.py": PLAYERS.replace('ttl="30d"', 'ttl="7d"').replace(
        '"spend_30d": "float64"}', '"spend_30d": "float64", "level": "int32"}')})
    plan = defs.plan(ws, repo)
    (change,) = plan.changes
    assert change.action == "update" and change.ref == "feature_view:player_activity"
    assert "+ column level: int32" in change.details and "~ ttl: '30d' -> '7d'" in change.details
    defs.apply(ws, repo)
    fv = ws.features.view("player_activity")
    assert fv.version == 1 and fv.ttl == pd.Timedelta(days=7)
    assert fv.to_pandas()["sessions_7d"].tolist() == [3, 4]


def test_an_incompatible_change_starts_a_new_version(ws, repo, tmp_path):
    defs.apply(ws, repo)
    write(tmp_path / "defs", {"players.py": PLAYERS.replace('"sessions_7d": "int64"', '"sessions_7d": "float64"')})
    plan = defs.plan(ws, repo)
    (change,) = plan.changes
    assert change.action == "new_version"
    assert "~ column sessions_7d: int64 -> float64" in change.details
    assert "version 1 -> 2" in change.details[0]
    assert "± feature_view:player_activity" in str(plan)
    defs.apply(ws, repo)
    assert ws.features.view("player_activity").version == 2


def test_rules_are_made_exactly_the_declared_ones(ws, repo, tmp_path):
    defs.apply(ws, repo)
    text = PLAYERS.replace("min=0)]", "min=0), defs.rule('plugins/quality/not_null.lua', column='sessions_7d')]")
    write(tmp_path / "defs", {"players.py": text})
    (change,) = defs.apply(ws, repo).changes
    assert change.details == ["+ rule not_null(column='sessions_7d') [error]"]
    write(tmp_path / "defs", {"players.py": PLAYERS.replace("min=0)", "min=1)")})
    (change,) = defs.apply(ws, repo).changes
    assert sorted(change.details) == ["+ rule range(column='spend_30d', min=1) [error]",
                                      "- rule not_null(column='sessions_7d') [error]",
                                      "- rule range(column='spend_30d', min=0) [error]"]
    assert [r.args for r in ws.features.view("player_activity").quality.rules()] == [
        {"column": "spend_30d", "min": 1}]


def test_a_view_without_rules_leaves_rules_added_in_a_notebook(ws, repo, tmp_path):
    rules = ',\n    rules=[defs.rule("plugins/quality/range.lua", column="spend_30d", min=0)])'
    without_rules = PLAYERS.replace(rules, ")")
    assert "rules" not in without_rules
    write(tmp_path / "defs", {"players.py": without_rules})
    defs.apply(ws, repo)
    ws.features.view("player_activity").add_rule("plugins/quality/range.lua", column="spend_30d", min=0)
    assert defs.plan(ws, repo).changes == []
    assert len(ws.features.view("player_activity").quality.rules()) == 1


def test_definitions_may_be_objects_in_a_notebook(ws):
    player = defs.Entity("player", join_keys={"player_id": "int64"})
    view = defs.FeatureView("scores", entities=player, schema={"score": keel.Float64()})
    plan = defs.apply(ws, [player, view])
    assert [c.ref for c in plan.changes] == ["entity:player", "feature_view:scores"]
    assert "Applied to" in plan._repr_html_() and "feature_view:scores" in plan._repr_html_()
    assert plan.to_pandas()["action"].tolist() == ["create", "create"]


# ------------------------------------------------------------------------- validated as a whole

def test_an_endpoint_naming_a_missing_feature_fails_the_plan_and_writes_nothing(ws, repo, tmp_path):
    with_model(ws)
    write(tmp_path / "defs", {"endpoint.py": """
        from keel import defs
        churn = defs.Endpoint("churn", model="churn@champion", features=["player_activty:spend_30d"])
        odd = defs.TrainingSpec("odd", features=["player_activity:spend_7d"])
        """})
    before = snapshot(ws)
    with pytest.raises(keel.InvalidArgument) as err:
        defs.plan(ws, repo)
    message = str(err.value)
    assert "2 problems in the definitions, nothing was changed" in message
    assert "endpoint 'churn' (" in message and "endpoint.py:3" in message
    assert ("reads 'player_activty:spend_30d' of feature view 'player_activty', which is neither declared nor in the "
            "workspace (declared: player_activity)") in message
    assert "feature view 'player_activity' has no column 'spend_7d' (its columns: sessions_7d, spend_30d)" in message
    with pytest.raises(keel.InvalidArgument):
        defs.apply(ws, repo)
    assert snapshot(ws) == before


def test_an_error_from_the_core_rolls_back_everything_applied_before_it(ws, repo, tmp_path):
    # The model the endpoint serves does not exist: the entity, view and spec before it are not kept.
    write(tmp_path / "defs", {"endpoint.py": ENDPOINT})
    before = snapshot(ws)
    with pytest.raises(keel.KeelError) as err:
        defs.apply(ws, repo)
    assert "endpoint.py:5: endpoint 'churn'" in str(err.value)
    assert snapshot(ws) == before
    with_model(ws)
    plan = defs.apply(ws, repo)
    assert plan.changes[-1].ref == "endpoint:churn"
    ws.features.view("player_activity").ingest(pd.DataFrame(
        {"player_id": [1], "event_timestamp": T0, "sessions_7d": [3], "spend_30d": [1.0]}))
    ws.features.materialize("player_activity")
    assert ws.endpoint("churn").predict({"player_id": 1})["prediction"] == pytest.approx(3 + 2 * 1.0)


def test_an_unknown_entity_and_a_name_declared_twice_are_errors(ws, tmp_path):
    folder = write(tmp_path / "bad", {"a.py": """
        from keel import defs
        v = defs.FeatureView("v", entities=["nobody"], schema={"x": "int64"})
        """})
    with pytest.raises(keel.InvalidArgument, match="uses entity 'nobody', which is neither declared nor in the"):
        defs.plan(ws, folder)
    folder = write(tmp_path / "twice", {"a.py": "from keel import defs\ne = defs.Entity('player', ['id'])\n",
                                        "b.py": "from keel import defs\ne = defs.Entity('player', ['player_id'])\n"})
    with pytest.raises(keel.InvalidArgument, match=r"entity 'player' is declared twice: at .*a.py:2 and at .*b.py:2"):
        defs.plan(ws, folder)


def test_a_failing_definition_file_names_its_line(ws, tmp_path):
    folder = write(tmp_path / "broken", {"a.py": "from keel import defs\n\nx = defs.Entity('p', [])\n"})
    with pytest.raises(keel.InvalidArgument, match=r"a.py:3: InvalidArgument: entity 'p' needs at least one join"):
        defs.plan(ws, folder)


def test_an_edited_file_is_read_again_in_the_same_process(ws, repo, tmp_path):
    assert len(defs.plan(ws, repo).changes) == 3
    write(tmp_path / "defs", {"players.py": PLAYERS.replace('"player_activity"', '"player_events"'),
                              "training.py": TRAINING.replace("player_activity:", "player_events:")})
    assert "feature_view:player_events" in [c.ref for c in defs.plan(ws, repo).changes]


# ---------------------------------------------------------------------------- endpoints, specs

def test_endpoint_changes_and_drift_show_in_the_plan(ws, repo, tmp_path):
    with_model(ws)
    write(tmp_path / "defs", {"endpoint.py": ENDPOINT})
    defs.apply(ws, repo)
    ws.features.view("player_activity").ingest(pd.DataFrame(
        {"player_id": [1], "event_timestamp": T0, "sessions_7d": [3], "spend_30d": [1.0]}))
    ws.features.materialize("player_activity")
    ep = ws.endpoint("churn")
    assert ep.definition["features"] == ["player_activity:sessions_7d", "player_activity:spend_30d"]
    assert defs.plan(ws, repo).changes == []
    ep.set_weights({"main": 1.0})  # unchanged weight: no drift
    x = pd.DataFrame({"sessions_7d": [0.0, 1.0], "spend_30d": [0.0, 1.0]})
    ws.models.log_model(None, LinearRegression().fit(x, [0.0, 1.0]), "churn")
    ws.models.set_alias("churn", "challenger", 2)
    write(tmp_path / "defs", {"endpoint.py": ENDPOINT.replace(
        'model="churn@champion"', 'routing="plugins/routing/weighted.lua", '
        'variants={"champion": ("churn@champion", 0.9), "challenger": ("churn@challenger", 0.1)}')})
    (change,) = defs.plan(ws, repo).changes
    assert change.action == "update" and change.details[0] == "revision 1 -> 2"
    assert "~ variants.challenger.weight: (none) -> 0.1" in change.details
    assert "- variants.main.weight" in change.details
    defs.apply(ws, repo)
    ws.endpoint("churn").set_weights({"champion": 0.5, "challenger": 0.5})  # someone changed it by hand
    (change,) = defs.plan(ws, repo).changes
    assert "~ variants.champion.weight: 0.5 -> 0.9" in change.details


def test_training_sets_are_built_from_a_spec(ws, repo):
    defs.apply(ws, repo)
    ws.features.view("player_activity").ingest(pd.DataFrame(
        {"player_id": [1, 2], "event_timestamp": T0, "sessions_7d": [3, 4], "spend_30d": [1.0, 2.0]}))
    labels = pd.DataFrame({"player_id": [1, 2], "event_timestamp": T0 + pd.Timedelta("1h"), "churned": [0, 1]})
    frame = ws.features.training_set(labels, spec="churn_training").to_pandas()
    assert frame["sessions_7d"].tolist() == [3, 4] and frame["spend_30d"].tolist() == [1.0, 2.0]
    with pytest.raises(keel.InvalidArgument):
        ws.features.training_set(labels, spec="churn_training", features=["player_activity:spend_30d"])


# ------------------------------------------------------------------------------------------ prune

def test_removed_definitions_are_kept_unless_pruned_with_confirmation(ws, repo, tmp_path):
    with_model(ws)
    write(tmp_path / "defs", {"endpoint.py": ENDPOINT})
    defs.apply(ws, repo)
    view = ws.features.view("player_activity")
    view.ingest(pd.DataFrame({"player_id": [1], "event_timestamp": T0, "sessions_7d": [3], "spend_30d": [1.0]}))
    labels = pd.DataFrame({"player_id": [1], "event_timestamp": T0 + pd.Timedelta("1h")})
    recorded = ws.features.training_set(labels, spec="churn_training")
    for name in ("training.py", "endpoint.py"):
        os.remove(tmp_path / "defs" / name)
    write(tmp_path / "defs", {"players.py": "from keel import defs\n"})

    plan = defs.plan(ws, repo)
    assert plan.changes == [] and plan.exit_code == 0
    assert [c.ref for c in plan.unmanaged] == ["endpoint:churn", "training_spec:churn_training",
                                               "feature_view:player_activity", "entity:player"]
    assert "apply with --prune removes them" in str(plan)
    assert defs.apply(ws, repo).changes == []  # kept

    pruning = defs.plan(ws, repo, prune=True)
    assert [c.action for c in pruning.changes] == ["remove"] * 4 and pruning.exit_code == 1
    before = snapshot(ws)
    with pytest.raises(keel.InvalidArgument, match="would remove 4 object"):
        defs.apply(ws, repo, prune=True)
    assert snapshot(ws) == before
    done = defs.apply(ws, repo, prune=True, yes=True)
    assert len(done.removals) == 4
    assert snapshot(ws)["views"] == [] and snapshot(ws)["endpoints"] == [] and snapshot(ws)["entities"] == []
    with pytest.raises(keel.NotFound, match="retired"):
        ws.features.view("player_activity")
    # The retired view's data stays: the recorded training set rebuilds.
    assert ws.features.training_set(labels, id=recorded.id).to_pandas().shape[0] == 1


def test_a_plan_confirmed_before_the_workspace_changed_is_refused(ws, repo, tmp_path):
    defs.apply(ws, repo)
    empty = write(tmp_path / "empty", {"none.py": "x = 1\n"})
    seen = defs.plan(ws, empty, prune=True)
    ws.features.entity("game", join_keys=["game_id"])  # someone adds an entity meanwhile
    with pytest.raises(keel.Conflict, match="changed since the plan you confirmed"):
        defs.apply_confirmed(ws, empty, seen)
    assert snapshot(ws)["entities"] == ["game", "player"]  # nothing was removed


# -------------------------------------------------------------------------------------------- CLI

def run_cli(*argv, cwd=None):
    return subprocess.run([sys.executable, "-m", "keel", *argv], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}, stdin=subprocess.DEVNULL)


def test_cli_exit_codes_gate_ci(tmp_path, repo):
    path = str(tmp_path / "team.keel")
    planned = run_cli("-w", path, "plan", repo)
    assert planned.returncode == 1, planned.stderr
    assert "+ feature_view:player_activity" in planned.stdout
    assert not os.path.exists(path)  # planning created nothing
    applied = run_cli("-w", path, "apply", repo, "--json")
    assert applied.returncode == 0, applied.stderr
    assert json.loads(applied.stdout)["summary"]["create"] == 3
    again = run_cli("-w", path, "plan", repo, "--json")
    assert again.returncode == 0 and json.loads(again.stdout)["changes"] == []
    broken = run_cli("-w", path, "plan", str(tmp_path / "nowhere"))
    assert broken.returncode >= 2 and "do not exist" in broken.stderr


def test_cli_prune_without_yes_changes_nothing(tmp_path, repo):
    path = str(tmp_path / "team.keel")
    assert cli(["-w", path, "apply", repo]) == 0
    empty = write(tmp_path / "empty", {"none.py": "x = 1\n"})
    refused = run_cli("-w", path, "apply", empty, "--prune")
    assert refused.returncode == keel.InvalidArgument.exit_code
    assert "--prune would remove 3 object(s)" in refused.stderr and "--yes" in refused.stderr
    assert run_cli("-w", path, "plan", repo).returncode == 0  # nothing was removed
    done = run_cli("-w", path, "apply", empty, "--prune", "--yes")
    assert done.returncode == 0, done.stderr
    assert "- feature_view:player_activity" in done.stdout
    assert run_cli("-w", path, "plan", empty).returncode == 0


def test_a_retirement_rolled_back_keeps_the_online_files(ws, repo):
    defs.apply(ws, repo)
    ws.features.view("player_activity").ingest(pd.DataFrame(
        {"player_id": [1], "event_timestamp": T0, "sessions_7d": [3], "spend_30d": [1.0]}))
    ws.features.materialize("player_activity")
    with pytest.raises(RuntimeError, match="a later step failed"), ws.native.transaction():
        ws.features.retire_view("player_activity")
        raise RuntimeError("a later step failed")
    online = ws.features.get_online(["player_activity:spend_30d"], player_id=[1])
    assert online["spend_30d"].tolist() == [1.0]  # the snapshot's file was not removed


def test_pruning_what_a_declaration_still_reads_fails_the_plan(ws, repo, tmp_path):
    defs.apply(ws, repo)
    only_spec = write(tmp_path / "only_spec", {"spec.py": """
        from keel import defs
        s = defs.TrainingSpec("spend_only", features=["player_activity:spend_30d"])
        """})
    assert [c.ref for c in defs.plan(ws, only_spec).changes] == ["training_spec:spend_only"]  # the view is kept
    with pytest.raises(keel.InvalidArgument, match=r"which --prune would remove .*: declare it"):
        defs.plan(ws, only_spec, prune=True)


def test_cli_prune_asks_a_person_at_a_terminal(tmp_path, repo, monkeypatch, capsys):
    path = str(tmp_path / "team.keel")
    assert cli(["-w", path, "apply", repo]) == 0
    empty = write(tmp_path / "empty", {"none.py": "x = 1\n"})
    monkeypatch.setattr(sys.stdin, "isatty", lambda: True)
    answers = iter(["no", "yes"])
    monkeypatch.setattr("builtins.input", lambda prompt: next(answers))
    capsys.readouterr()
    assert cli(["-w", path, "apply", empty, "--prune"]) == 1  # declined
    out, err = capsys.readouterr()
    assert "- feature_view:player_activity" in out and "Nothing was changed." in err
    assert cli(["-w", path, "plan", repo]) == 0
    assert cli(["-w", path, "apply", empty, "--prune"]) == 0  # confirmed
    assert "Applied to" in capsys.readouterr().out
    assert keel.open(path).features.list() == []
