"""`GET /health`: for a container's HEALTHCHECK or a load balancer; no login, no data."""

from __future__ import annotations

import logging

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from app.web.deps import SessionDep

logger = logging.getLogger(__name__)
router = APIRouter(include_in_schema=False)


@router.get("/health")
def health(session: SessionDep) -> JSONResponse:
    """200 `{"status": "ok"}` when the database answers a query, else 503. It waits for a
    transaction like any request, so a server too busy to serve shows as slow here too."""
    try:
        session.execute(text("SELECT 1"))
    except SQLAlchemyError:
        logger.warning("health check: the database does not answer", exc_info=True)
        return JSONResponse(
            {"status": "unavailable", "detail": "the database does not answer"}, status_code=503
        )
    return JSONResponse({"status": "ok"})
