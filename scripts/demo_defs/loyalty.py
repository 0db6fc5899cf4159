"""The demo's feature definitions, as code: `keel plan scripts/demo_defs` / `keel apply scripts/demo_defs`.

The demo applies them in its first step; a re-run finds nothing to do.
"""

from keel import defs

player = defs.Entity("player", join_keys=["player_id"], description="a game account")

loyalty = defs.FeatureView(
    "player_loyalty", entities=[player], ttl="30d", owner="data-eng",
    description="7/30-day activity, installs, rewards and spend per player",
    schema={"sessions_7d": "int64", "minutes_7d": "float64", "days_since_last_session": "int64",
            "active_days_30d": "int64", "games_installed": "int64", "rewards_claimed_30d": "int64",
            "reward_value_30d": "int64", "spend_30d": "float64", "tenure_days": "int64", "platform_ios": "int64"},
    rules=[defs.rule("plugins/quality/range.lua", column="spend_30d", min=0, severity="error"),
           defs.rule("plugins/quality/not_null.lua", column="sessions_7d", severity="error")])

churn_training = defs.TrainingSpec("churn_training", features=[loyalty],
                                   description="what the churn models train on: every loyalty feature")
