"""Definitions as code: entities, feature views (with their quality rules), training-set specs and
endpoints declared in Python files, and a workspace made to match them.

    # defs/players.py
    from keel import defs

    player = defs.Entity("player", join_keys=["player_id"])
    activity = defs.FeatureView("player_activity", entities=[player], ttl="30d", owner="data-eng",
                                schema={"sessions_7d": "int64", "spend_30d": "float64"},
                                rules=[defs.rule("plugins/quality/range.lua", column="spend_30d", min=0)])
    churn_training = defs.TrainingSpec("churn_training", features=[activity])

    $ keel plan defs/        # exit 0: nothing to do, 1: changes, 2 and up: an error
    $ keel apply defs/       # all or nothing; the same definitions again change nothing

In Python: ``keel.defs.plan(ws, "defs/")`` and ``keel.defs.apply(ws, "defs/")`` (or definition
objects instead of a path). See the README, "Definitions as code".
"""

from keel.defs.engine import apply, apply_confirmed, plan
from keel.defs.load import Definitions, load
from keel.defs.objects import Definition, Endpoint, Entity, FeatureView, TrainingSpec
from keel.defs.plan import Change, Plan
from keel.quality import rule  # defs.rule(...): a quality rule for FeatureView(rules=[...])

__all__ = ["Entity", "FeatureView", "TrainingSpec", "Endpoint", "Definition", "Definitions", "load", "plan",
           "apply", "apply_confirmed", "Plan", "Change", "rule"]
