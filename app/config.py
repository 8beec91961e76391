"""Typed settings, read from TRIALDESK_* environment variables (and a .env file)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PLACEHOLDER_SECRET = "dev-only-secret-change-me"  # noqa: S105 - refused in production below


class StudyFolders(BaseModel):
    """Where one study's definition (`forms`) and SDTM mappings (`exports`, optional) live."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    forms: Path
    exports: Path | None = None


class Settings(BaseSettings):
    """Server configuration. Nothing reads the environment at import time: call get_settings()."""

    model_config = SettingsConfigDict(env_prefix="TRIALDESK_", env_file=".env", extra="ignore")

    environment: Literal["development", "test", "production"] = "development"
    database_url: str = "sqlite:///data/trialdesk.db"
    studies: tuple[StudyFolders, ...] = Field(
        default=(StudyFolders(forms=Path("forms"), exports=Path("exports")),),
        min_length=1,
        description='the studies served, as JSON: [{"forms": "forms", "exports": "exports"}, ...]',
    )
    migrations_dir: Path = Path("migrations")
    secret_key: SecretStr = SecretStr(PLACEHOLDER_SECRET)
    session_idle_minutes: int = 30
    secure_cookies: bool = False
    host: str = "127.0.0.1"
    port: int = 8000
    log_level: str = "INFO"

    @model_validator(mode="after")
    def _refuse_placeholder_secret(self) -> Self:
        placeholder = self.secret_key.get_secret_value() == PLACEHOLDER_SECRET
        if self.environment == "production" and placeholder:
            raise ValueError("TRIALDESK_SECRET_KEY must be set in production")
        return self


@lru_cache
def get_settings() -> Settings:
    return Settings()
