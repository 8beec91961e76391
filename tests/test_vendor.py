"""The vendored htmx file is the one its manifest records."""

import hashlib
import json

from tests.conftest import REPO

HTMX = REPO / "app" / "web" / "static" / "vendor" / "htmx"


def test_htmx_matches_its_recorded_checksum_and_licence() -> None:
    manifest = json.loads((HTMX / "MANIFEST.json").read_text())
    digest = hashlib.sha256((HTMX / manifest["file"]).read_bytes()).hexdigest()
    assert digest == manifest["sha256"]
    assert manifest["version"].startswith("2.")
    assert "Zero-Clause BSD" in (HTMX / "LICENSE").read_text()
