"""The annotated CRF (acrf.pdf) and the blank CRF (blankcrf.pdf), issue 11: every form of the
study as pages a reviewer reads, the annotated one with the SDTM variables of each item, both
in the SDTM package with Define-XML pointing to acrf.pdf by page. The PDFs are read back with
pypdf and a page of each is rendered to PNG with pypdfium2 (test-artifacts/)."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path

import pypdfium2
import pytest
from lxml import etree
from pypdf import PdfReader

from app.exporters.crf_annotations import NOT_SUBMITTED, annotate
from app.exporters.crf_pdf import (
    ACRF_PDF,
    BLANK_CRF_PDF,
    FONT_DIR,
    CrfPages,
    render_crf,
    write_crfs,
)
from app.schemas import define_schema
from app.sdtm.spec import load_sdtm_specs
from app.study.loader import Study, load_study
from tests.conftest import ARTIFACTS, EXPORTS
from tests.test_cli import run

HT201 = Path(__file__).resolve().parent / "studies" / "HT201"
NS = {
    "odm": "http://www.cdisc.org/ns/odm/v1.3",
    "def": "http://www.cdisc.org/ns/def/v2.1",
    "xlink": "http://www.w3.org/1999/xlink",
}


def flat(text: str) -> str:
    """Extracted text with its line breaks and runs of spaces as single spaces."""
    return " ".join(text.split())


def page_texts(path: Path) -> list[str]:
    return [flat(page.extract_text()) for page in PdfReader(path).pages]


def form_text(texts: list[str], pages: CrfPages, form_oid: str) -> str:
    return " ".join(texts[number - 1] for number in pages.pages[form_oid])


def render_page(path: Path, number: int, artefact: str) -> Path:
    """Page `number` (from 1) of the PDF as a PNG in test-artifacts/."""
    ARTIFACTS.mkdir(exist_ok=True)
    document = pypdfium2.PdfDocument(path)
    try:
        image = document[number - 1].render(scale=1.5).to_pil()
    finally:
        document.close()
    target = ARTIFACTS / artefact
    image.save(target)
    return target


@pytest.fixture(scope="module")
def crfs(zm001: Study, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, CrfPages]:
    out = tmp_path_factory.mktemp("crf")
    return write_crfs(zm001, annotate(zm001, load_sdtm_specs(EXPORTS, zm001)), out)


def test_both_crfs_name_every_form_on_its_pages(
    zm001: Study, crfs: tuple[Path, Path, CrfPages]
) -> None:
    acrf, blank, pages = crfs
    assert (acrf.name, blank.name) == (ACRF_PDF, BLANK_CRF_PDF)
    acrf_texts, blank_texts = page_texts(acrf), page_texts(blank)
    assert set(pages.pages) == set(zm001.forms)
    for form in zm001.forms.values():
        on_its_pages = form_text(acrf_texts, pages, form.oid)
        assert f"Form OID {form.oid}" in on_its_pages, form.oid
        assert form.title in on_its_pages
        assert form.oid in " ".join(blank_texts), form.oid
    assert "Contents" in acrf_texts[1] and "Adverse Events (F.AE)" in " ".join(acrf_texts[1:3])
    vs = form_text(acrf_texts, pages, "F.VS")
    assert "Systolic blood pressure" in vs and "mmHg" in vs
    assert "Visits: Screening (1)" in vs and "repeating" in vs
    ae = form_text(acrf_texts, pages, "F.AE")
    assert "Log form, entered at any time" in ae
    assert "Y = Yes N = No" in ae  # a code list, codes and decodes


def test_the_annotated_crf_shows_each_items_sdtm_variable_and_the_blank_crf_none(
    zm001: Study, crfs: tuple[Path, Path, CrfPages]
) -> None:
    acrf, blank, pages = crfs
    texts = page_texts(acrf)
    ae = form_text(texts, pages, "F.AE")
    assert "AE (Adverse Events)" in ae
    assert "AESTDTC" in ae  # the onset date item AESTDAT goes to AESTDTC
    assert "AETERM IT.AE.AETERM text, length 200 AETERM" in ae
    assert "SUPPAE.QVAL when QNAM = AEDLT" in ae
    vs = form_text(texts, pages, "F.VS")
    assert "VS (Vital Signs)" in vs and "VSORRES when VSTESTCD = SYSBP" in vs
    annotations = annotate(zm001, load_sdtm_specs(EXPORTS, zm001))
    unmapped = next(
        (form, item)
        for form in zm001.forms.values()
        if annotations[form.oid].domains
        for group in form.item_groups
        for item in group.items
        if not annotations[form.oid].of(item)
    )
    assert NOT_SUBMITTED in form_text(texts, pages, unmapped[0].oid), unmapped[1].oid
    whole_blank = " ".join(page_texts(blank))
    for annotation in ("VSORRES when", "SUPPAE.QVAL", "AESTDTC", NOT_SUBMITTED, "(Adverse Events)"):
        assert annotation not in whole_blank
    shown = render_page(acrf, pages.pages["F.VS"][0], "acrf-vital-signs.png")
    assert shown.stat().st_size > 20_000


def test_the_blank_crf_renders_a_form_page(crfs: tuple[Path, Path, CrfPages]) -> None:
    _acrf, blank, _pages = crfs
    texts = page_texts(blank)
    number = next(n for n, text in enumerate(texts, start=1) if "Form OID F.PE" in text)
    assert "Body system" in texts[number - 1] and "GENERAL APPEARANCE" in texts[number - 1]
    assert render_page(blank, number, "blankcrf-physical-examination.png").stat().st_size > 20_000


def test_a_second_study_gets_its_own_crfs_the_same_bytes_for_the_same_moment(
    tmp_path: Path,
) -> None:
    study = load_study(HT201 / "forms")
    annotations = annotate(study, load_sdtm_specs(HT201 / "exports", study))
    moment = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
    acrf, blank, pages = write_crfs(study, annotations, tmp_path, moment)
    assert render_crf(study, annotations, moment)[0] == acrf.read_bytes()
    texts = page_texts(acrf)
    assert set(pages.pages) == set(study.forms)
    vs = form_text(texts, pages, "F.VS")
    assert "VSORRES when VSTESTCD = SYSBP" in vs
    assert "HT201" in texts[0] and "ZM001" not in " ".join(texts)
    assert all(form.oid in " ".join(page_texts(blank)) for form in study.forms.values())


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_sdtm_package_ships_both_crfs_and_define_xml_points_to_acrf_pages(
    database_url: str, tmp_path: Path
) -> None:
    env = {"TRIALDESK_DATABASE_URL": database_url}
    assert run("demo", "--subjects", "2", env=env).returncode == 0
    out = tmp_path / "sdtm"
    result = run("export", "sdtm", "-o", str(out), "--format", "csv", env=env)
    assert result.returncode == 0, result.stderr
    assert (out / ACRF_PDF).is_file() and (out / BLANK_CRF_PDF).is_file()
    assert not list(out.glob("*odm-metadata.xml"))
    define = etree.parse(str(out / "define.xml"))
    assert define_schema().validate(define), define_schema().error_log
    leaf = define.find(".//def:leaf[@ID='LF.CRF']", NS)
    assert leaf is not None and leaf.get(f"{{{NS['xlink']}}}href") == ACRF_PDF
    assert leaf.findtext("def:title", namespaces=NS) == "Annotated CRF"
    refs = define.findall(".//def:AnnotatedCRF/def:DocumentRef", NS)
    assert [ref.get("leafID") for ref in refs] == ["LF.CRF"]
    origin = define.find(".//odm:ItemDef[@OID='IT.AE.AETERM']/def:Origin", NS)
    assert origin is not None
    page = origin.find("def:DocumentRef/def:PDFPageRef", NS)
    assert page is not None and page.get("Type") == "PhysicalRef"
    texts = page_texts(out / ACRF_PDF)
    first = int(str(page.get("PageRefs")).split()[0])
    assert "Form OID F.AE" in texts[first - 1] and "AETERM" in texts[first - 1]


def test_the_vendored_font_is_the_one_its_manifest_and_licence_name() -> None:
    manifest = json.loads((FONT_DIR / "MANIFEST.json").read_text())
    for name, digest in manifest["files"].items():
        assert hashlib.sha256((FONT_DIR / name).read_bytes()).hexdigest() == digest, name
    assert "Bitstream" in (FONT_DIR / "LICENSE").read_text()
