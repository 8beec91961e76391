"""The API documentation page, `/docs`: Swagger UI served from the package.

FastAPI's own page loads Swagger UI from a CDN, so it is blank on a network without internet
access, as clinical sites' often are. Swagger UI is vendored in `static/vendor/swagger-ui/`
(version and checksums in its MANIFEST.json) and the page points at those files only.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse

SWAGGER_UI = "/static/vendor/swagger-ui"


def install(app: FastAPI) -> None:
    """Serve `/docs` (public, like `/openapi.json`). The app is built with `docs_url=None` and
    `redoc_url=None`: FastAPI's ReDoc page would load its script from a CDN too."""

    async def swagger_ui(_request: Request) -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} API",
            swagger_js_url=f"{SWAGGER_UI}/swagger-ui-bundle.js",
            swagger_css_url=f"{SWAGGER_UI}/swagger-ui.css",
            swagger_favicon_url=f"{SWAGGER_UI}/favicon-32x32.png",
            # Without this Swagger UI may send the schema to an online validator for a badge.
            swagger_ui_parameters={"validatorUrl": None},
        )

    app.add_route("/docs", swagger_ui, include_in_schema=False)
