"""The churn service a team would write with FastAPI (bench_server.py's peer; run by uvicorn, 2 workers).

LightGBM boosters loaded once per worker; the 20 features looked up in an in-memory pandas DataFrame
indexed by player_id (the team's "feature cache", loaded from the same data Keel materialized);
sticky A/B by hashing player_id (50/50 champion/challenger); a bearer token checked; JSON out.

Environment: PEER_FEATURES (a parquet file: player_id + the feature columns), PEER_CHAMPION and
PEER_CHALLENGER (LightGBM model text files), PEER_TOKEN (the bearer token).
A body may name {"variant": ...} to force one (QA; the benchmark uses it to check the answers).
"""

from __future__ import annotations

import hashlib
import hmac
import os

import lightgbm as lgb
import pandas as pd
from fastapi import FastAPI, Header, HTTPException
from pydantic import BaseModel

FEATURES = pd.read_parquet(os.environ["PEER_FEATURES"]).set_index("player_id").sort_index()
COLUMNS = list(FEATURES.columns)
MODELS = {"champion": lgb.Booster(model_file=os.environ["PEER_CHAMPION"]),
          "challenger": lgb.Booster(model_file=os.environ["PEER_CHALLENGER"])}
VERSIONS = {"champion": 1, "challenger": 2}
TOKEN = os.environ.get("PEER_TOKEN", "")

app = FastAPI(title="churn")


class PredictRequest(BaseModel):
    player_id: int
    variant: str | None = None


def sticky_variant(player_id: int) -> str:
    """50/50 by a stable hash of the player id (the same in every worker and restart)."""
    digest = hashlib.blake2b(str(player_id).encode(), digest_size=8, key=b"churn").digest()
    return "champion" if int.from_bytes(digest, "little") % 2 == 0 else "challenger"


@app.post("/predict")
def predict(req: PredictRequest, authorization: str = Header("")) -> dict:
    if TOKEN and not hmac.compare_digest(authorization, f"Bearer {TOKEN}"):
        raise HTTPException(401, "bad token")
    try:
        row = FEATURES.loc[[req.player_id], COLUMNS]
    except KeyError:
        raise HTTPException(404, f"unknown player {req.player_id}") from None
    variant = req.variant or sticky_variant(req.player_id)
    if variant not in MODELS:
        raise HTTPException(400, f"unknown variant {variant}")
    score = float(MODELS[variant].predict(row.to_numpy(), num_threads=1)[0])
    return {"prediction": score, "variant": variant, "model": f"churn/{VERSIONS[variant]}",
            "version": VERSIONS[variant]}


@app.get("/healthz")
def healthz() -> dict:
    return {"ok": True}
