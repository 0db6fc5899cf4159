#!/usr/bin/env python3
"""`make demo`: Keel end to end on a synthetic gaming-loyalty dataset.

Players, their sessions, game installs and loyalty rewards are generated (seeded, so every run sees the
same data) and published as a feature view. Each run of the demo trains the next recipe from RECIPES
(a genuinely different model each time) on a point-in-time training set, tracks it as a run, registers
it, and sends it through a promotion gate: it becomes champion only if its AUC on held-out players beats
the current champion's on the same players (both numbers are printed). The endpoint `churn` then serves
the champion (and, once there is one, the challenger to 10% of players) from the online store, in
process and over HTTP through `keel serve` (the C++ server on the same workspace), and the lineage
the work recorded is shown: feature view -> training set -> run -> model -> endpoint.

The workspace is ``$KEEL_WORKSPACE`` or ``./demo.keel``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.append(str(Path(__file__).resolve().parent.parent / "python"))  # when run without make

import keel

SEED = 7
N_PLAYERS = 3000
DAYS = 60
MODEL = "churn"
EXPERIMENT = "churn"
FEATURES = ["sessions_7d", "minutes_7d", "days_since_last_session", "active_days_30d", "games_installed",
            "rewards_claimed_30d", "reward_value_30d", "spend_30d", "tenure_days", "platform_ios"]


# ------------------------------------------------------------------------------------------- output

def say(title: str) -> None:
    print(f"\n== {title}")


def item(label: str, value) -> None:
    print(f"   {label:<24} {value}")


# ------------------------------------------------------------------------------------------ dataset

def make_dataset(seed: int = SEED) -> dict[str, pd.DataFrame]:
    """Raw tables a studio would have: players, sessions, installs, rewards, and who churned.

    A hidden engagement score drives sessions, installs and rewards; churn (no session in the 14
    days after the observation window) is likelier for disengaged, non-paying, recently joined players.
    """
    rng = np.random.default_rng(seed)
    ids = np.arange(1, N_PLAYERS + 1)
    engagement = rng.beta(2, 3, N_PLAYERS)
    players = pd.DataFrame({
        "player_id": ids,
        "country": rng.choice(["BR", "DE", "IN", "JP", "US"], N_PLAYERS, p=[0.2, 0.15, 0.25, 0.1, 0.3]),
        "platform": rng.choice(["android", "ios"], N_PLAYERS, p=[0.65, 0.35]),
        "tenure_days": rng.integers(DAYS, 900, N_PLAYERS),
        "spend_30d": np.round(rng.gamma(0.6, 12.0, N_PLAYERS) * (rng.random(N_PLAYERS) < 0.25 + 0.4 * engagement),
                              2),
    })

    per_player = rng.poisson(2 + 40 * engagement)
    owner = np.repeat(ids, per_player)
    eng = np.repeat(engagement, per_player)
    # engaged players play until the end of the window; disengaged ones drift away earlier
    last_day = np.repeat(np.minimum(DAYS, rng.integers(10, DAYS + 1, N_PLAYERS) + (engagement > 0.45) * DAYS),
                         per_player)
    sessions = pd.DataFrame({
        "player_id": owner,
        "day": (rng.random(owner.size) * last_day).astype(int),
        "minutes": np.round(rng.gamma(2.0, 6 + 20 * eng), 1),
    })

    n_installs = rng.poisson(1 + 4 * engagement)
    installs = pd.DataFrame({
        "player_id": np.repeat(ids, n_installs),
        "game": rng.choice(["puzzle-quest", "kart-rush", "farm-story", "space-ops", "word-up"], n_installs.sum()),
        "day": rng.integers(0, DAYS, n_installs.sum()),
    })

    n_rewards = rng.poisson(0.5 + 6 * engagement)
    rewards = pd.DataFrame({
        "player_id": np.repeat(ids, n_rewards),
        "reward": rng.choice(["daily-login", "streak", "tournament", "referral"], n_rewards.sum()),
        "value": rng.choice([10, 25, 50, 100], n_rewards.sum()),
        "day": rng.integers(0, DAYS, n_rewards.sum()),
        "claimed": rng.random(n_rewards.sum()) < 0.4 + 0.6 * np.repeat(engagement, n_rewards),
    })

    logit = (2.0 - 9.0 * engagement - 0.04 * players["spend_30d"].to_numpy() - 0.0015 * players["tenure_days"]
             + rng.normal(0, 0.4, N_PLAYERS))
    labels = pd.DataFrame({"player_id": ids, "churned": (rng.random(N_PLAYERS) < 1 / (1 + np.exp(-logit))).astype(int)})
    return {"players": players, "sessions": sessions, "installs": installs, "rewards": rewards, "labels": labels}


def build_features(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """One row a player: activity in the last 7/30 days of the window, installs, rewards, spend."""
    players, sessions = tables["players"], tables["sessions"]
    installs, rewards = tables["installs"], tables["rewards"]
    recent = sessions[sessions["day"] >= DAYS - 7].groupby("player_id")
    month = sessions[sessions["day"] >= DAYS - 30].groupby("player_id")
    claimed = rewards[rewards["claimed"] & (rewards["day"] >= DAYS - 30)].groupby("player_id")
    frame = players.set_index("player_id")
    out = pd.DataFrame(index=frame.index)
    out["sessions_7d"] = recent.size().reindex(out.index, fill_value=0)
    out["minutes_7d"] = recent["minutes"].sum().reindex(out.index, fill_value=0.0)
    out["days_since_last_session"] = (DAYS - 1 - sessions.groupby("player_id")["day"].max()).reindex(
        out.index, fill_value=DAYS)
    out["active_days_30d"] = month["day"].nunique().reindex(out.index, fill_value=0)
    out["games_installed"] = installs.groupby("player_id")["game"].nunique().reindex(out.index, fill_value=0)
    out["rewards_claimed_30d"] = claimed.size().reindex(out.index, fill_value=0)
    out["reward_value_30d"] = claimed["value"].sum().reindex(out.index, fill_value=0).astype("int64")
    out["spend_30d"] = frame["spend_30d"]
    out["tenure_days"] = frame["tenure_days"]
    out["platform_ios"] = (frame["platform"] == "ios").astype("int64")
    out = out.join(tables["labels"].set_index("player_id"))
    return out.reset_index()


# ------------------------------------------------------------------------------------------ recipes

# Each run of the demo trains the next recipe: a genuinely different model each time, so the gate below
# has something real to decide. Runs past the list retrain the boosted recipe with another subsample seed.
RECIPES = [
    {"name": "gbm-stumps", "kind": "gbm", "params": {"n_estimators": 30, "learning_rate": 0.1, "max_depth": 1},
     "why": "a quick baseline: boosted one-split trees"},
    {"name": "logreg-scaled", "kind": "logreg", "params": {"C": 1.0},
     "why": "standardized features into a logistic regression"},
    {"name": "gbm-deep", "kind": "gbm", "params": {"n_estimators": 80, "learning_rate": 0.3, "max_depth": 5},
     "why": "deeper trees and a high learning rate (may overfit)"},
]


def recipe_for(run_number: int) -> dict:
    if run_number <= len(RECIPES):
        return RECIPES[run_number - 1]
    seed = SEED + run_number
    return {"name": f"gbm-depth2-seed{seed}", "kind": "gbm",
            "params": {"n_estimators": 60, "learning_rate": 0.1, "max_depth": 2, "subsample": 0.8,
                       "random_state": seed},
            "why": f"depth-2 boosting on an 80% subsample drawn with seed {seed}"}


# -------------------------------------------------------------------------------------------- train

WINDOW_END = pd.Timestamp.now(tz="UTC").floor("D")  # the snapshot's event time: today 00:00 UTC


DEFINITIONS = Path(__file__).resolve().parent / "demo_defs"


def apply_definitions(ws) -> None:
    """Definitions as code: the entity, the feature view with its quality rules and the training-set
    spec live in scripts/demo_defs/, and `keel apply` makes the workspace match (nothing to do on a
    re-run). The same in CI: `keel plan scripts/demo_defs` exits 1 when a change is pending."""
    plan = keel.defs.apply(ws, DEFINITIONS)
    done = ", ".join(f"{c.action} {c.ref}" for c in plan.changes)
    item("definitions", f"keel apply {DEFINITIONS.relative_to(DEFINITIONS.parents[1])}: "
         f"{done or 'nothing to do, ' + str(plan.counts()['unchanged']) + ' unchanged'}")


def publish_features(ws, frame: pd.DataFrame):
    """The feature store: the per-player features are ingested into the view `player_loyalty` (defined
    in scripts/demo_defs), stamped with the snapshot's event time. A re-run on the same day finds the
    snapshot there already."""
    fv = ws.features.view("player_loyalty")
    have = ws.features.list().to_pandas().set_index("name").loc["player_loyalty"]
    if have["rows"] and pd.Timestamp(have["last_event"]) >= WINDOW_END:
        return fv, 0
    return fv, fv.ingest(frame[["player_id", *FEATURES]].assign(event_timestamp=WINDOW_END))["rows"]


def build_training_set(ws, frame: pd.DataFrame, run):
    """Labels (who churned) at the end of the window, joined point in time to the view. Built with
    run=: the training set -> run edge is recorded by the feature store, nobody types it."""
    labels = frame[["player_id", "churned"]].assign(event_timestamp=WINDOW_END + pd.Timedelta(hours=1))
    return ws.features.training_set(labels, spec="churn_training", run=run)


def split(frame: pd.DataFrame):
    """The same stratified 75/25 split every run: the 25% is held out from every model's training, so
    the champion and a new candidate are scored on the same unseen players."""
    from sklearn.model_selection import train_test_split
    X, y = frame[FEATURES], frame["churned"]
    return train_test_split(X, y, test_size=0.25, random_state=SEED, stratify=y)


def train(recipe: dict, run, X_train, X_valid, y_train, y_valid):
    """Fits the recipe; boosted models log train/valid AUC and log-loss after every boosting stage."""
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss, roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    params = dict(recipe["params"])
    if recipe["kind"] == "logreg":
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000, **params)).fit(X_train, y_train)
    else:
        params.setdefault("random_state", SEED)
        model = GradientBoostingClassifier(**params).fit(X_train, y_train)
        for stage, (p_train, p_valid) in enumerate(zip(model.staged_predict_proba(X_train),
                                                       model.staged_predict_proba(X_valid)), start=1):
            run.log_metrics({"train_auc": roc_auc_score(y_train, p_train[:, 1]),
                             "valid_auc": roc_auc_score(y_valid, p_valid[:, 1]),
                             "valid_logloss": log_loss(y_valid, p_valid[:, 1])}, step=stage)
    valid_auc = roc_auc_score(y_valid, model.predict_proba(X_valid)[:, 1])
    run.log_metric("auc", valid_auc)
    return model, valid_auc


def log_artifacts(run, model, frame: pd.DataFrame, tables: dict[str, pd.DataFrame]) -> None:
    """Feature importances (|coefficient| for the linear model) and a data set summary, as run files."""
    final = model.steps[-1][1] if hasattr(model, "steps") else model
    weight = getattr(final, "feature_importances_", None)
    if weight is None:
        weight = np.abs(final.coef_[0])
    with tempfile.TemporaryDirectory() as tmp:
        importances = pd.DataFrame({"feature": FEATURES, "importance": weight})
        importances.sort_values("importance", ascending=False).to_csv(Path(tmp) / "feature_importance.csv",
                                                                     index=False)
        summary = {name: len(table) for name, table in tables.items()}
        summary["churn_rate"] = round(float(frame["churned"].mean()), 4)
        (Path(tmp) / "dataset_summary.json").write_text(json.dumps(summary, indent=2))
        for name in ("feature_importance.csv", "dataset_summary.json"):
            run.log_artifact(Path(tmp) / name)


# -------------------------------------------------------------------------------------- registry

def register(ws, run, model, recipe: dict, X_valid) -> keel.registry.ModelVersion:
    if MODEL not in ws.models:
        ws.models.create(MODEL, description="Will a player stop playing in the next 14 days?", owner="growth-ml",
                         tags={"team": "growth"})
    return run.log_model(model, name=MODEL, input_example=X_valid.head(5),
                         description=f"{recipe['name']}: {recipe['why']}", tags={"recipe": recipe["name"]})


def held_out_auc(ws, ref: str, X_valid, y_valid) -> float:
    """A registered model's AUC on the held-out players, recomputed now from the registry's copy."""
    from sklearn.metrics import roc_auc_score
    mv = ws.models.get(ref)
    model = ws.models.load(mv.ref)
    return float(roc_auc_score(y_valid, model.predict_proba(X_valid[mv.feature_names or FEATURES])[:, 1]))


def gate(ws, mv, auc: float, X_valid, y_valid) -> tuple[bool, str]:
    """The promotion gate: the candidate becomes champion (and Production) only if its held-out AUC
    beats the champion's on the same players. Whichever model loses becomes the challenger, which the
    endpoint keeps serving to a slice of players so the online outcome can confirm the offline one."""
    if "champion" not in ws.models.model(MODEL).aliases:
        ws.models.set_alias(MODEL, "champion", version=mv.version)
        ws.models.transition_stage(MODEL, mv.version, "Production")
        return True, f"promoted: v{mv.version} is the first champion (held-out AUC {auc:.4f})"
    champion = ws.models.get(f"{MODEL}@champion")
    champion_auc = held_out_auc(ws, champion.ref, X_valid, y_valid)
    item(f"champion v{champion.version}", f"held-out AUC {champion_auc:.4f}")
    item(f"candidate v{mv.version}", f"held-out AUC {auc:.4f}")
    if auc > champion_auc:
        ws.models.set_alias(MODEL, "champion", version=mv.version)
        ws.models.transition_stage(MODEL, mv.version, "Production", archive_existing=True)
        ws.models.set_alias(MODEL, "challenger", version=champion.version)
        return True, (f"promoted: v{mv.version} beats v{champion.version} by {auc - champion_auc:+.4f} AUC; "
                      f"v{champion.version} stays on as challenger")
    ws.models.set_alias(MODEL, "challenger", version=mv.version)
    return False, (f"not promoted: v{mv.version} trails champion v{champion.version} by {auc - champion_auc:+.4f} "
                   f"AUC; it becomes the challenger")


def show_cli(ws, *args: str) -> None:
    """Runs `keel --workspace WS ARGS` (as `python -m keel`) and shows its output and exit code."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    out = subprocess.run([sys.executable, "-m", "keel", "--workspace", ws.path, *args], capture_output=True,
                         text=True, env=env)
    print(f"   $ keel {' '.join(args)}")
    for line in (out.stdout + out.stderr).rstrip().splitlines():
        print(f"     {line}")
    print(f"     (exit code {out.returncode})")


# --------------------------------------------------------------------------------------- serving

def serve(ws, frame: pd.DataFrame) -> None:
    """The endpoint `churn`: online features -> sticky Lua routing -> the aliased model -> assignment log.
    Champion 90%, challenger 10% once a challenger exists. Aliases are followed, so a promotion reaches
    the endpoint with no redeploy."""
    ws.features.materialize("player_loyalty")          # offline -> online, incremental
    aliases = ws.models.model(MODEL).aliases
    variants = {"champion": (f"{MODEL}@champion", 0.9 if "challenger" in aliases else 1.0)}
    if "challenger" in aliases:
        variants["challenger"] = (f"{MODEL}@challenger", 0.1)
    ep = ws.endpoint(MODEL, routing="plugins/routing/sticky.lua", variants=variants,
                     features=[f"player_loyalty:{f}" for f in FEATURES])
    started = pd.Timestamp.now(tz="UTC")
    item("endpoint", f"{ep.lineage_ref} revision {ep.revision}: " +
         ", ".join(f"{v} -> {ref} ({w:.0%})" for v, (ref, w) in variants.items()))

    print("   a few requests (player_id -> variant, model, churn probability):")
    champion = ws.models.load(f"{MODEL}@champion")
    rows = frame.set_index("player_id")
    for pid in (1, 2, 3, 4, 5):
        answer = ep.predict({"player_id": pid, "tenant": "studio-a"})
        offline = ""
        if answer["variant"] == "champion":  # the same row through the model directly, for comparison
            direct = champion.predict_proba(rows.loc[[pid], FEATURES])[0, 1]
            offline = f"  (model on the training row: {direct:.4f})"
        print(f"     {pid:>4} -> {answer['variant']:<10} {answer['model']:<8} {answer['prediction']:.4f}{offline}")

    requests = frame[["player_id"]].assign(tenant="studio-a")
    ep.predict_batch(requests.head(10))  # warm: the first batch also builds the batch path's buffers
    t0 = time.perf_counter()
    ep.predict_batch(requests)
    batch_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for pid in frame["player_id"].head(500):
        ep.predict({"player_id": int(pid)})
    single_us = (time.perf_counter() - t0) / 500 * 1e6
    log = ep.assignments().to_pandas()
    log = log[log["ts"] >= started.floor("ms")]
    split = log.groupby("variant").size()
    item("variant split", ", ".join(f"{v} {n:,} ({n / len(log):.1%})" for v, n in split.items()) +
         f" of {len(log):,} requests this run")
    item("fallbacks", f"{int((log['fallback'] != '').sum())} (a routing failure would serve champion and count here)")
    item("latency", f"{len(requests):,} players in one batch: {batch_s * 1e3:.0f} ms; one request: "
         f"{single_us:.0f} µs (wall clock on this machine: varies with load)")
    print("   assignment log (last 4 rows; times are when each request was served):")
    for _, r in log.tail(4).iterrows():
        print(f"     {r['ts']:%H:%M:%S}.{r['ts'].microsecond // 1000:03d} key={r['key']:<5} "
              f"variant={r['variant']:<10} model={r['model']:<8} "
              f"revision={r['revision']} prediction={r['prediction']:.4f}")
    issues = ep.issues()
    item("data issues upstream", "none" if issues.empty else
         ", ".join(sorted(f"{r.rule} on {r.target}" for r in issues.itertuples())) +
         " (the refused batch in step 5; ep.issues() shows what feeds the endpoint)")


def serve_http(ws, frame: pd.DataFrame) -> None:
    """The same endpoint over HTTP: keel-server (C++, no Python in the request path) on this
    workspace, called the way a game client would, on one keep-alive connection."""
    import http.client

    from keel import compact

    with keel.serve(ws, [MODEL]) as server:
        item("keel serve", f"{server.url} (pid {server.pid}, bearer token required)")
        conn = http.client.HTTPConnection("127.0.0.1", server.port)
        path = f"/v1/endpoints/{MODEL}/predict"
        ids = [int(p) for p in frame["player_id"].head(500)]
        answers = []
        t0 = time.perf_counter()
        for pid in ids:
            conn.request("POST", path, body=json.dumps({"player_id": pid}), headers=server.headers)
            answers.append(json.loads(conn.getresponse().read()))
        per_call_us = (time.perf_counter() - t0) / len(ids) * 1e6
        conn.request("POST", path, body=json.dumps({"player_id": ids[0]}),
                     headers={**server.headers, "Accept": "application/x-keel-compact"})
        small = conn.getresponse().read()
        conn.close()
        local = ws.endpoint(MODEL).predict({"player_id": ids[0]})
        first = answers[0]
        item("over HTTP", f"player {ids[0]} -> {first['variant']} {first['model']} {first['prediction']:.4f} "
             f"(in-process: {local['prediction']:.4f})")
        item("round trip", f"{per_call_us:.0f} µs per request from this Python client on one keep-alive "
             "connection (wall clock: varies with load; bench/bench_server.py measures the server with wrk)")
        item("compact answer", f"{len(small)} bytes: {compact.decode(small)}")
        requests = [line for line in server.metrics().splitlines()
                    if line.startswith("keel_requests_total") and f'endpoint="{MODEL}"' in line]
        item("metrics", f"{len(requests)} request series on /metrics, e.g. {requests[0] if requests else '-'}")


def guard(ws, frame: pd.DataFrame) -> None:
    """Quality rules (declared with the view in scripts/demo_defs) run on every ingest of the feature
    view: a batch with negative spend is refused and nothing is written; the failure opens a data
    issue everything downstream can see."""
    from keel import quality

    fv = ws.features.view("player_loyalty")
    bad = frame[["player_id", *FEATURES]].head(200).assign(event_timestamp=WINDOW_END + pd.Timedelta(hours=2))
    bad.loc[bad.index[:5], "spend_30d"] = -9.99
    try:
        fv.ingest(bad)
    except quality.DataQualityError as err:
        item("bad batch", f"refused: {err.report.failures[0]['message']}")
    item("open data issues", ", ".join(sorted(set(ws.lineage.issues(fv.lineage_ref).rule))) or "none")


# ------------------------------------------------------------------------------------------- main

def main() -> int:
    started = time.perf_counter()
    path = os.environ.get("KEEL_WORKSPACE") or str(Path.cwd() / "demo.keel")
    ws = keel.open(path)
    run_number = len(ws.models.versions(MODEL)) + 1 if MODEL in ws.models else 1
    recipe = recipe_for(run_number)
    print(f"Keel demo: churn prediction for a gaming loyalty program (run {run_number})\n   workspace: {ws.path}")

    say(f"1. Data: synthetic players, sessions, installs, rewards (seed {SEED}, the same every run)")
    tables = make_dataset()
    for name, table in tables.items():
        item(name, f"{len(table):>7,} rows  {', '.join(table.columns)}")
    frame = build_features(tables)
    item("churn rate", f"{frame['churned'].mean():.1%}")
    apply_definitions(ws)
    _fv, ingested = publish_features(ws, frame)
    item("feature view", f"player_loyalty ({len(FEATURES)} features): " +
         (f"{ingested:,} rows ingested at {WINDOW_END:%Y-%m-%d %H:%M} UTC" if ingested else
          f"today's snapshot ({WINDOW_END:%Y-%m-%d}) is already there, nothing ingested"))

    say(f"2. Train and track a run: recipe '{recipe['name']}' ({recipe['why']})")
    with ws.start_run(experiment=EXPERIMENT, name=recipe["name"]) as run:
        run.log_params({"recipe": recipe["name"], **recipe["params"]})
        run.set_tags({"dataset": "synthetic-loyalty", "seed": SEED})
        train_set = build_training_set(ws, frame, run)
        frame = train_set.to_pandas()
        X_train, X_valid, y_train, y_valid = split(frame)
        model, auc = train(recipe, run, X_train, X_valid, y_train, y_valid)
        log_artifacts(run, model, frame, tables)
        mv = register(ws, run, model, recipe, X_valid)
    run = ws.runs.get(run.id)
    item("training set", f"{train_set.lineage_ref} ({len(frame):,} players, point in time; "
         "rebuild with training_set(id=...))")
    item("run", f"{run.id} ({run.status}; a new id every run)")
    item("params", ", ".join(f"{k}={v}" for k, v in run.params.items()))
    item("held-out AUC", f"{auc:.4f} on {len(X_valid):,} players no model trains on")
    item("artifacts", ", ".join(a["path"] for a in run.artifacts()))

    say("3. Register the model")
    item("version", f"{mv.ref} (flavour {mv.flavour}, artifact {mv.digest[:12]}...)")
    item("signature", ", ".join(mv.feature_names or []))
    loaded = ws.models.load(mv.ref)
    sample = X_valid.head(3)
    item("native engine", f"{type(loaded).__module__}.{type(loaded).__name__}, max |native - scikit-learn| = "
         f"{np.abs(loaded.predict_proba(sample) - model.predict_proba(sample)).max():.1e}")

    say("4. The promotion gate: better on the held-out players, or no promotion")
    _promoted, decision = gate(ws, mv, auc, X_valid, y_valid)
    item("decision", decision)
    aliases = ws.models.model(MODEL).aliases
    item("aliases", ", ".join(f"{a}=v{v}" for a, v in sorted(aliases.items())))
    print("\n   audit trail (times are this run's clock):")
    for _, e in ws.models.events(MODEL).tail(4).iterrows():
        print(f"     {e['at']:%H:%M:%S} {e['user']:<10} {e['action']:<5} {e['subject']:<10} "
              f"{e['from'] or '-':>10} -> {e['to'] or '-'}")

    say("5. Quality rules guard the feature view")
    guard(ws, frame)

    say("6. Serve: the endpoint 'churn' (online features -> Lua routing -> model -> assignment log)")
    serve(ws, frame)

    say("7. Serve over HTTP: keel serve (C++ server, same workspace, no restart to follow changes)")
    serve_http(ws, frame)

    say("8. Lineage, recorded by the work: what does the endpoint serve, and from what?")
    up = ws.lineage.upstream(f"endpoint:{MODEL}")
    short = lambda ref: ref[:len("artifact:") + 12] + "..." if ref.startswith("artifact:") else ref  # noqa: E731
    for edge in up.edges:
        if edge["from"].startswith("artifact:"):
            continue  # the run's files; `keel lineage upstream endpoint:churn` lists them
        print(f"   {'  ' * (edge['depth'] - 1)}{short(edge['to'])} <-{edge['kind']}- {short(edge['from'])}")

    say("9. The same from a CI script: the keel command")
    show_cli(ws, "models", "list")
    show_cli(ws, "models", "show", "churn/999")
    print(f"   (also: keel models promote {MODEL} {mv.version} --alias champion --stage Production, "
          f"keel lineage upstream endpoint:{MODEL} --json, keel runs list --experiment {EXPERIMENT})")

    n = len(ws.models.versions(MODEL))
    print(f"\nDone in {time.perf_counter() - started:.1f} s (wall clock; varies with load). '{MODEL}' has {n} "
          f"version{'s' * (n != 1)}; run `make demo` again to train the next recipe and gate it.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
