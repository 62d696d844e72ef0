"""Serving: point-in-time features and scores from the online store (Redis only at request time).

    GET  /features/{user_id}?at=<ISO time>
         The user's features at that instant (default: now): what fct_transaction_features would give
         a transaction of this user at `at` for every column that does not need the transaction itself
         (windows [at - N days, at) with ties excluded, seconds since the previous transaction, session
         events in the 30 minutes before, tenure, age, country one-hots, loyalty tier as of `at`,
         hour/day of `at`). Not in it: amount_usd, amount_usd_scaled, is_amount_outlier and the device
         one-hots (they are the transaction's), and the label (unknown at the time).
    GET  /features/{user_id}/transactions/{transaction_id}
         Every feature column of fct_transaction_features for a transaction the store holds, at its own
         timestamp: the row the batch computes for it (the skew check compares exactly these).
    POST /score
         {"user_id": ..., "transaction_id": ...}   a stored transaction, or
         {"transaction": {contract fields}}         a transaction not sent yet (scored before accepting it)
         -> {"score": fraud probability, "model": ..., "features": {...}} with the latest trained model
         (pipeline/training/train.py's data/models/training_set-<version>/model.joblib, the newest by its
         metrics.json); 503 when no model has been trained yet.

404 for a user or transaction the store does not hold; 503 before the store was first synced
(`python -m realtime.online_store sync`); 422 for a time that does not parse, or one earlier than the
store's history (it holds the last days of the gold and what streamed since: older features are in
fct_transaction_features).
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import pyarrow as pa
import redis
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import Response
from pydantic import BaseModel

from realtime import online_store

router = APIRouter()
MODEL_CHECK_SECONDS = 5.0


def client_of(request: Request) -> redis.Redis:
    client = getattr(request.app.state, "client", None)
    if client is None:
        client = online_store.connect()
        request.app.state.client = client
    return client


def answer_errors(error: Exception) -> HTTPException:
    if isinstance(error, online_store.UnknownUser | online_store.UnknownTransaction):
        return HTTPException(status_code=404, detail=str(error))
    if isinstance(error, online_store.NotSynced):
        return HTTPException(status_code=503, detail=str(error))
    if isinstance(error, online_store.OutsideHistory):
        return HTTPException(status_code=422, detail=str(error))
    raise error


def json_response(body: dict[str, Any]) -> Response:
    """The answer as JSON, without FastAPI's response validation and encoding (a third of a GET's time):
    the values are already plain str, int, float, bool and None."""
    return Response(json.dumps(body), media_type="application/json")


# async: the work is one Redis round trip (a Lua script), cheaper on the event loop than a hop to a thread
@router.get("/features/{user_id}", response_model=None)
async def user_features(user_id: str, request: Request, at: str | None = None) -> Response:
    try:
        moment = online_store.parse_time(at) if at else dt.datetime.now(dt.UTC).replace(tzinfo=None)
    except ValueError:
        raise HTTPException(status_code=422, detail=f"at={at!r} is not an ISO 8601 time") from None
    try:
        return json_response(online_store.user_features(client_of(request), user_id, moment))
    except (online_store.UnknownUser, online_store.NotSynced, online_store.OutsideHistory) as error:
        raise answer_errors(error) from None


@router.get("/features/{user_id}/transactions/{transaction_id}", response_model=None)
async def transaction_features(user_id: str, transaction_id: str, request: Request) -> Response:
    try:
        return json_response(online_store.transaction_features(client_of(request), user_id, transaction_id))
    except (
        online_store.UnknownUser,
        online_store.UnknownTransaction,
        online_store.NotSynced,
        online_store.OutsideHistory,
    ) as error:
        raise answer_errors(error) from None


# ---------------------------------------------------------------------------------------------------
# scoring with the latest trained model


@dataclass
class LoadedModel:
    path: Path
    version: str
    trained_at: str
    model: Any


class ModelCache:
    """The newest model under the models folder, loaded once and again when a newer one appears."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.loaded: LoadedModel | None = None
        self.checked = 0.0

    def models_root(self) -> Path:
        from extract.load import data_dir

        return data_dir() / "models"

    def newest(self) -> tuple[Path, dict[str, Any]] | None:
        found = []
        for metrics_path in self.models_root().glob("training_set-*/metrics.json"):
            try:
                metrics = json.loads(metrics_path.read_text())
            except (OSError, ValueError):
                continue
            model_path = metrics_path.parent / "model.joblib"
            if model_path.exists():
                found.append((str(metrics.get("trained_at", "")), model_path, metrics))
        if not found:
            return None
        _trained, model_path, metrics = max(found, key=lambda item: item[0])
        return model_path, metrics

    def get(self) -> LoadedModel | None:
        with self.lock:
            if self.loaded is None or time.monotonic() - self.checked > MODEL_CHECK_SECONDS:
                self.checked = time.monotonic()
                newest = self.newest()
                if newest is not None and (self.loaded is None or newest[0] != self.loaded.path):
                    path, metrics = newest
                    self.loaded = LoadedModel(
                        path, str(metrics.get("version")), str(metrics.get("trained_at")), joblib.load(path)
                    )
            return self.loaded


models = ModelCache()


class ScoreRequest(BaseModel):
    user_id: str | None = None
    transaction_id: str | None = None
    transaction: dict[str, str | None] | None = None


def feature_table(features: dict[str, Any]) -> pa.Table:
    from pipeline.training.train import BOOLEAN_FEATURES, NUMERIC_FEATURES

    columns: dict[str, pa.Array] = {}
    for name in NUMERIC_FEATURES:
        columns[name] = pa.array([features[name]], pa.float64())
    for name in BOOLEAN_FEATURES:
        columns[name] = pa.array([features[name]], pa.bool_())
    columns["loyalty_tier"] = pa.array([features["loyalty_tier"]], pa.string())
    return pa.table(columns)


@router.post("/score")
def score(body: ScoreRequest, request: Request) -> dict[str, Any]:
    from pipeline.training.train import feature_matrix

    loaded = models.get()
    if loaded is None:
        raise HTTPException(
            status_code=503, detail="no trained model yet: run the pipeline's training step (`pipeline train`)"
        )
    client = client_of(request)
    try:
        if body.transaction is not None:
            features = online_store.candidate_features(client, body.transaction)
        elif body.user_id and body.transaction_id:
            features = online_store.transaction_features(client, body.user_id, body.transaction_id)
        else:
            raise HTTPException(status_code=422, detail="send {user_id, transaction_id} or {transaction: {...}}")
    except ValueError as error:
        raise HTTPException(status_code=422, detail=str(error)) from None
    except (online_store.UnknownUser, online_store.UnknownTransaction, online_store.NotSynced) as error:
        raise answer_errors(error) from None
    probability = float(loaded.model.predict_proba(feature_matrix(feature_table(features)))[0, 1])
    return {
        "score": probability,
        "model": str(loaded.path),
        "model_version": loaded.version,
        "trained_at": loaded.trained_at,
        "features": features,
    }
