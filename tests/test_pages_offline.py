"""Pages that must work on a site network without internet access."""

from __future__ import annotations

from urllib.parse import urlsplit

import lxml.html
import pytest

from tests.conftest import InProcessServer


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_api_docs_page_loads_only_assets_the_server_serves(app_server: InProcessServer) -> None:
    client = app_server.client(timeout=30)
    response = client.get("/docs")
    assert response.status_code == 200
    page = lxml.html.fromstring(response.text)
    assets = page.xpath("//script/@src | //link/@href | //img/@src")
    assert len(assets) >= 3  # script, stylesheet, icon
    for url in assets:
        assert not urlsplit(url).netloc, f"{url} is on another host"
        assert client.get(url).status_code == 200, url
    script = " ".join(page.xpath("//script[not(@src)]/text()"))
    assert "url: '/openapi.json'" in script
    assert client.get("/openapi.json").status_code == 200
    assert client.get("/redoc").status_code == 404  # ReDoc would load its script from a CDN
