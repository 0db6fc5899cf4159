#!/usr/bin/env python3
"""`make demo`: Keel end to end on a synthetic gaming-loyalty dataset.

Players, their sessions, game installs and loyalty rewards are generated (seeded, so every run sees
the same data); a churn model is trained and tracked as a run (params, a metric per boosting stage,
artifacts), logged and registered as a model version, gated against the current champion, promoted
(alias ``champion`` and stage Production), and its lineage is shown. Re-running adds a new run and
a new version and moves the alias.

The workspace is ``$KEEL_WORKSPACE`` or ``./demo.keel``. Each step is a small function so that later
capabilities (features, inference, serving) can slot in.
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

import keel  # noqa: E402

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


# -------------------------------------------------------------------------------------------- train

def train(frame: pd.DataFrame, run, params: dict):
    """Gradient boosting; logs train/valid AUC and log-loss after every boosting stage."""
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.metrics import log_loss, roc_auc_score
    from sklearn.model_selection import train_test_split

    X, y = frame[FEATURES], frame["churned"]
    X_train, X_valid, y_train, y_valid = train_test_split(X, y, test_size=0.25, random_state=SEED, stratify=y)
    model = GradientBoostingClassifier(random_state=SEED, **params).fit(X_train, y_train)
    for stage, (p_train, p_valid) in enumerate(zip(model.staged_predict_proba(X_train),
                                                   model.staged_predict_proba(X_valid)), start=1):
        run.log_metrics({"train_auc": roc_auc_score(y_train, p_train[:, 1]),
                         "valid_auc": roc_auc_score(y_valid, p_valid[:, 1]),
                         "valid_logloss": log_loss(y_valid, p_valid[:, 1])}, step=stage)
    valid_auc = roc_auc_score(y_valid, model.predict_proba(X_valid)[:, 1])
    run.log_metric("auc", valid_auc)
    return model, X_valid, valid_auc


def log_artifacts(run, model, frame: pd.DataFrame, tables: dict[str, pd.DataFrame]) -> None:
    """Feature importances and a summary of the data set, as files attached to the run."""
    with tempfile.TemporaryDirectory() as tmp:
        importances = pd.DataFrame({"feature": FEATURES, "importance": model.feature_importances_})
        importances.sort_values("importance", ascending=False).to_csv(Path(tmp) / "feature_importance.csv",
                                                                     index=False)
        summary = {name: len(table) for name, table in tables.items()}
        summary["churn_rate"] = round(float(frame["churned"].mean()), 4)
        (Path(tmp) / "dataset_summary.json").write_text(json.dumps(summary, indent=2))
        for name in ("feature_importance.csv", "dataset_summary.json"):
            run.log_artifact(Path(tmp) / name)


WINDOW_END = pd.Timestamp("2024-06-30", tz="UTC")  # the observation window's last day


def publish_features(ws, frame: pd.DataFrame):
    """The feature store: the per-player features become the feature view `player_loyalty` (as of
    the window's end) and the model trains on a point-in-time training set built from it."""
    ws.features.entity("player", join_keys=["player_id"], description="a game account")
    fv = ws.features.feature_view(
        "player_loyalty", entities=["player"], ttl="30d", owner="data-eng",
        description="7/30-day activity, installs, rewards and spend per player",
        schema={f: ("float64" if frame[f].dtype.kind == "f" else "int64") for f in FEATURES})
    fv.ingest(frame[["player_id", *FEATURES]].assign(event_timestamp=WINDOW_END))
    labels = frame[["player_id", "churned"]].assign(event_timestamp=WINDOW_END + pd.Timedelta(hours=1))
    return ws.features.training_set(labels, features=[f"player_loyalty:{f}" for f in FEATURES])


def record_data_lineage(ws, run, tables: dict[str, pd.DataFrame], train_set) -> str:
    """The raw tables are outside Keel, so declare them: tables -> feature view; the training set
    (written by the feature store) -> run."""
    for name in ("players", "sessions", "installs", "rewards", "labels"):
        ws.lineage.add_node(f"table:{name}", owner="data-eng", description=f"synthetic {name} table")
        ws.lineage.add_edge(f"table:{name}", "feeds", "feature_view:player_loyalty")
    return run.log_input(train_set)


# -------------------------------------------------------------------------------------- registry

def register(ws, run, model, X_valid) -> "keel.registry.ModelVersion":
    if MODEL not in ws.models:
        ws.models.create(MODEL, description="Will a player stop playing in the next 14 days?", owner="growth-ml",
                         tags={"team": "growth"})
    return run.log_model(model, name=MODEL, input_example=X_valid.head(5),
                         description="gradient boosting on 7/30-day activity, installs, rewards and spend",
                         tags={"algo": "gradient-boosting"})


def champion_auc(ws) -> tuple[int | None, float | None]:
    """The current champion's version and validation AUC (from the run that produced it)."""
    if "champion" not in ws.models.model(MODEL).aliases:
        return None, None
    champion = ws.models.get(f"{MODEL}@champion")
    auc = ws.runs.get(champion.run_id).metrics.get("auc") if champion.run_id else None
    return champion.version, auc


def promote(ws, mv, auc: float) -> str:
    """A promotion gate: the new version becomes champion (and Production) unless it is worse."""
    current, current_auc = champion_auc(ws)
    if current_auc is not None and auc < current_auc - 0.005:
        ws.models.set_alias(MODEL, "challenger", version=mv.version)
        return f"kept champion v{current} (AUC {current_auc:.4f}); v{mv.version} is the challenger"
    ws.models.set_alias(MODEL, "champion", version=mv.version)
    ws.models.transition_stage(MODEL, mv.version, "Production", archive_existing=True)
    if current is None:
        return f"v{mv.version} is the first champion"
    return f"v{mv.version} replaces v{current} as champion (AUC {auc:.4f} vs {current_auc:.4f})"


def show_cli(ws, *args: str) -> None:
    """Runs `keel --workspace WS ARGS` (as `python -m keel`) and shows its output and exit code."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    out = subprocess.run([sys.executable, "-m", "keel", "--workspace", ws.path, *args], capture_output=True,
                         text=True, env=env)
    print(f"   $ keel {' '.join(args)}")
    for line in (out.stdout + out.stderr).rstrip().splitlines():
        print(f"     {line}")
    print(f"     (exit code {out.returncode})")


# ------------------------------------------------------------------------------------------- main

def guard_and_route(ws, frame: pd.DataFrame) -> None:
    """Quality rules run on every ingest of the feature view (a batch with negative spend is refused,
    nothing written); a sticky Lua routing plugin splits players 90/10 between champion and challenger."""
    from keel import plugins, quality

    fv = ws.features.feature_view("player_loyalty")
    if not fv.quality.rule_ids():
        fv.add_rule("plugins/quality/range.lua", column="spend_30d", min=0, severity="error")
        fv.add_rule("plugins/quality/not_null.lua", column="sessions_7d", severity="error")
    bad = frame[["player_id", *FEATURES]].head(200).assign(event_timestamp=WINDOW_END + pd.Timedelta(days=1))
    bad.loc[bad.index[:5], "spend_30d"] = -9.99
    try:
        fv.ingest(bad)
    except quality.DataQualityError as err:
        item("bad batch", f"refused: {err.report.failures[0]['message']}")
    item("open data issues", ", ".join(sorted(set(ws.lineage.issues(fv.lineage_ref).rule))) or "none")
    router = plugins.Router("plugins/routing/sticky.lua", {"champion": 0.9, "challenger": 0.1},
                            config={"key": "player_id"}, name=MODEL)
    served = pd.Series([d.variant for d in router.route_many(frame[["player_id"]])]).value_counts()
    item("sticky split", ", ".join(f"{v} {n:,}" for v, n in served.items()))
    timing = router.bench(200_000, 50_000)
    item("routing decision", f"{timing['median_ns']:.0f} ns median inside C++ (sticky.lua)")


def main() -> int:
    started = time.perf_counter()
    path = os.environ.get("KEEL_WORKSPACE") or str(Path.cwd() / "demo.keel")
    ws = keel.open(path)
    print(f"Keel demo: churn prediction for a gaming loyalty program\n   workspace: {ws.path}")

    say("1. Data: synthetic players, sessions, installs, rewards (seed %d)" % SEED)
    tables = make_dataset()
    for name, table in tables.items():
        item(name, f"{len(table):>7,} rows  {', '.join(table.columns)}")
    frame = build_features(tables)
    item("churn rate", f"{frame['churned'].mean():.1%}")
    train_set = publish_features(ws, frame)
    frame = train_set.to_pandas()
    item("feature view", f"player_loyalty ({len(FEATURES)} features, {len(frame):,} players)")
    item("training set", f"{train_set.lineage_ref} (point in time, rebuild with training_set(id=...))")

    say("2. Train and track a run")
    params = {"n_estimators": 60, "learning_rate": 0.1, "max_depth": 3, "subsample": 0.8}
    with ws.start_run(experiment=EXPERIMENT, name="gbm-loyalty") as run:
        run.log_params(params)
        run.set_tags({"dataset": "synthetic-loyalty", "seed": SEED})
        record_data_lineage(ws, run, tables, train_set)
        model, X_valid, auc = train(frame, run, params)
        log_artifacts(run, model, frame, tables)
        mv = register(ws, run, model, X_valid)
    run = ws.runs.get(run.id)
    item("run", f"{run.id} ({run.status})")
    item("params", ", ".join(f"{k}={v}" for k, v in run.params.items()))
    item("validation AUC", f"{auc:.4f} (logged per stage for {params['n_estimators']} stages)")
    item("artifacts", ", ".join(a["path"] for a in run.artifacts()))

    say("3. Register the model")
    item("version", f"{mv.ref} (flavour {mv.flavour}, artifact {mv.digest[:12]}...)")
    item("signature", ", ".join(mv.feature_names or []))

    say("4. Promote")
    item("decision", promote(ws, mv, auc))
    champion = ws.models.get(f"{MODEL}@champion")
    item("churn@champion", f"{champion.ref} stage={champion.stage}")
    loaded = ws.models.load(f"{MODEL}@champion")
    sample = X_valid.head(3)
    item("champion predicts", np.round(loaded.predict_proba(sample)[:, 1], 3).tolist())
    item("native engine", f"{type(loaded).__module__}.{type(loaded).__name__}, max |native - scikit-learn| = "
         f"{np.abs(loaded.predict_proba(sample) - model.predict_proba(sample)).max():.1e}")
    print("\n   audit trail:")
    events = ws.models.events(MODEL).tail(6)
    for _, e in events.iterrows():
        print(f"     {e['at']:%H:%M:%S} {e['user']:<10} {e['action']:<5} {e['subject']:<10} "
              f"{e['from'] or '-':>10} -> {e['to'] or '-'}")

    ws.features.materialize("player_loyalty", end=WINDOW_END + pd.Timedelta(days=1))
    online = ws.features.online_reader([f"player_loyalty:{f}" for f in FEATURES])
    row = online.lookup(np.array([1, 2, 3]), now_ms=int((WINDOW_END + pd.Timedelta(days=1)).timestamp() * 1000))
    item("online, players 1-3", np.round(loaded.predict_proba(pd.DataFrame(row, columns=FEATURES))[:, 1], 3).tolist())

    say("5. Lineage: what is churn@champion made from?")
    up = ws.lineage.upstream(champion.lineage_ref)
    short = lambda ref: ref[:len("artifact:") + 12] + "..." if ref.startswith("artifact:") else ref  # noqa: E731
    for edge in up.edges:
        print(f"   {'  ' * (edge['depth'] - 1)}{short(edge['to'])} <-{edge['kind']}- {short(edge['from'])}")

    say("6. The same from a CI script: the keel command")
    show_cli(ws, "models", "list")
    show_cli(ws, "models", "show", "churn/999")
    print(f"   (also: keel models promote {MODEL} {mv.version} --alias champion --stage Production, "
          f"keel lineage upstream {champion.lineage_ref} --json, keel runs list --experiment {EXPERIMENT})")
    say("7. Plugins: quality rules guard the feature view, Lua routes players between models")
    guard_and_route(ws, frame)

    n = len(ws.models.versions(MODEL))
    print(f"\nDone in {time.perf_counter() - started:.1f} s. '{MODEL}' has {n} version{'s' * (n != 1)}; "
          "run `make demo` again to train, gate and promote another.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
