"""The base of every study definition model."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Definition(BaseModel):
    """Base of every definition model: immutable, and unknown keys are errors."""

    model_config = ConfigDict(frozen=True, extra="forbid")
