"""The churn service written with BentoML (bench_server.py's peer; `bentoml serve`, 2 workers).

Same as fastapi_app.py: LightGBM boosters loaded once per worker, the 20 features from an in-memory
pandas DataFrame indexed by player_id, sticky 50/50 A/B by hashing player_id, a bearer token checked.
Environment: PEER_FEATURES, PEER_CHAMPION, PEER_CHALLENGER, PEER_TOKEN (as fastapi_app.py).
"""

from __future__ import annotations

import hashlib
import hmac
import os

import bentoml
import lightgbm as lgb
import pandas as pd

VERSIONS = {"champion": 1, "challenger": 2}


def sticky_variant(player_id: int) -> str:
    digest = hashlib.blake2b(str(player_id).encode(), digest_size=8, key=b"churn").digest()
    return "champion" if int.from_bytes(digest, "little") % 2 == 0 else "challenger"


@bentoml.service(workers=2, traffic={"timeout": 30})
class Churn:
    def __init__(self) -> None:
        self.features = pd.read_parquet(os.environ["PEER_FEATURES"]).set_index("player_id").sort_index()
        self.columns = list(self.features.columns)
        self.models = {"champion": lgb.Booster(model_file=os.environ["PEER_CHAMPION"]),
                       "challenger": lgb.Booster(model_file=os.environ["PEER_CHALLENGER"])}
        self.token = os.environ.get("PEER_TOKEN", "")

    @bentoml.api
    def predict(self, player_id: int, ctx: bentoml.Context, variant: str | None = None) -> dict:
        if self.token and not hmac.compare_digest(ctx.request.headers.get("authorization", ""),
                                                  f"Bearer {self.token}"):
            ctx.response.status_code = 401
            return {"error": "bad token"}
        row = self.features.loc[[player_id], self.columns]
        variant = variant or sticky_variant(player_id)
        score = float(self.models[variant].predict(row.to_numpy(), num_threads=1)[0])
        return {"prediction": score, "variant": variant, "model": f"churn/{VERSIONS[variant]}",
                "version": VERSIONS[variant]}
