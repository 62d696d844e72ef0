"""Serving: GET /features/{user_id}?at=... and scoring, from the online store in Redis only."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
