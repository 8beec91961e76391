"""The vendored htmx and Swagger UI files are the ones their manifests record; the vendored
Define-XML schema loads offline and comes with its licences."""

import hashlib
import json

from lxml import etree

from app.schemas import DEFINE_STYLESHEET, define_schema
from tests.conftest import REPO

HTMX = REPO / "app" / "web" / "static" / "vendor" / "htmx"


def test_htmx_matches_its_recorded_checksum_and_licence() -> None:
    manifest = json.loads((HTMX / "MANIFEST.json").read_text())
    digest = hashlib.sha256((HTMX / manifest["file"]).read_bytes()).hexdigest()
    assert digest == manifest["sha256"]
    assert manifest["version"].startswith("2.")
    assert "Zero-Clause BSD" in (HTMX / "LICENSE").read_text()


def test_define_xml_schema_and_stylesheet_are_vendored_with_their_licences() -> None:
    define = REPO / "app" / "schemas" / "define-2.1"
    example = etree.parse(define / "examples" / "defineV21-SDTM.xml")
    assert define_schema().validate(example)
    html = str(etree.XSLT(etree.parse(DEFINE_STYLESHEET))(example))
    assert "Supplemental Qualifiers for DM" in html
    assert "MIT License" in (define / "LICENSE.lexjansen-define-xml-2.1-stylesheets.md").read_text()
    assert "MIT License" in (DEFINE_STYLESHEET.parent / "define2-1.xsl.LICENSE.TXT").read_text()


def test_dataset_json_schema_is_vendored_with_its_licence() -> None:
    dataset_json = REPO / "app" / "schemas" / "dataset-json-1.1"
    schema = json.loads((dataset_json / "dataset.schema.json").read_text())
    assert schema["$schema"] == "https://json-schema.org/draft/2019-09/schema"
    assert "datasetJSONVersion" in schema["required"]
    assert "MIT License" in (dataset_json / "LICENSE.cdisc-org-cdisc-rules-engine").read_text()


def test_swagger_ui_matches_its_recorded_checksums_and_licence() -> None:
    swagger = REPO / "app" / "web" / "static" / "vendor" / "swagger-ui"
    manifest = json.loads((swagger / "MANIFEST.json").read_text())
    for name, sha256 in manifest["files"].items():
        assert hashlib.sha256((swagger / name).read_bytes()).hexdigest() == sha256, name
    assert manifest["version"].startswith("5.")
    assert "Apache License" in (swagger / "LICENSE").read_text()
