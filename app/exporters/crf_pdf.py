"""The study's CRF as PDF: `acrf.pdf`, annotated with the SDTM variables each item goes to
(`app.exporters.crf_annotations`), and `blankcrf.pdf`, the same pages without annotations,
for sites. Both are laid out from `forms/` alone (no subject's data) with fpdf2.

Each form starts a page: its title and OID, version, the visits that schedule it (or that it
is a log form), in the annotated CRF the box of the SDTM domains it feeds, then each item
group (label, OID, whether it repeats, its preset rows) as a table of its items: question,
name and OID, data type with length, decimals, units and ranges, and the code list's codes
and decodes; the annotated CRF adds the SDTM annotation of each item, coloured by domain.
A contents page lists the forms with their first page, and each form is a PDF bookmark.

Text is set in DejaVu Sans Condensed (vendored in `app/fonts/` with its licence), so labels
with any character (≥, µ, ×10^9) print as written.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

from fpdf import FPDF
from fpdf.outline import OutlineSection

from app.exporters.crf_annotations import NOT_SUBMITTED, Annotation, FormAnnotations
from app.exporters.crf_table import Cell, draw_table, paragraph, row_height
from app.study.loader import Study
from app.study.model import DataType, FormDef, ItemDef, ItemGroupDef

ACRF_PDF = "acrf.pdf"
BLANK_CRF_PDF = "blankcrf.pdf"
FONT_DIR = Path(__file__).resolve().parent.parent / "fonts"
FONT = "DejaVu"

FORMS_PER_CONTENTS_PAGE = 46
"""Contents lines on a page (the first, below its heading, holds the fewest)."""
DOMAIN_COLOURS = ((255, 236, 153), (189, 228, 255), (201, 240, 196), (255, 210, 222))
"""Fill colours of the SDTM domains on a page, in the order of its domain box (acrf style)."""
NOT_SUBMITTED_COLOUR = (230, 230, 230)

DERIVATION_SHOWN = 120
"""A derived item's expression is printed up to this length; a longer one (eGFR's) is code
for the definition's readers, and its help says in words how it is derived."""
GROUP_TITLE_SPACE = 18
"""Height in mm of an item group's title and condition, with the table's heading row."""
BLANK_WIDTHS = (62, 32, 30, 56)
ANNOTATED_WIDTHS = (50, 27, 25, 40, 38)
"""Column widths in mm (A4 portrait less 15 mm margins: 180 mm)."""


@dataclass(frozen=True)
class CrfPages:
    """The pages of each form (by OID) in a CRF document, numbered from 1."""

    pages: Mapping[str, tuple[int, ...]]


class _CrfDocument(FPDF):
    """An A4 document with the study's running header and page footer (fpdf2 calls
    `header` and `footer` on each page)."""

    def __init__(self, running_title: str) -> None:
        super().__init__(orientation="portrait", unit="mm", format="A4")
        self.running_title = running_title
        self.form_title = ""
        self.add_font(FONT, "", FONT_DIR / "DejaVuSansCondensed.ttf")
        self.add_font(FONT, "B", FONT_DIR / "DejaVuSansCondensed-Bold.ttf")
        self.set_margins(15, 18, 15)
        self.set_auto_page_break(auto=True, margin=16)

    def header(self) -> None:
        self.set_font(FONT, "", 7.5)
        self.set_text_color(110)
        self.set_xy(15, 8)
        self.cell(90, 5, self.running_title)
        self.cell(90, 5, self.form_title, align="R")
        self.set_draw_color(190)
        self.line(15, 13.5, 195, 13.5)
        self.set_text_color(0)
        self.set_y(18)

    def footer(self) -> None:
        self.set_y(-11)
        self.set_font(FONT, "", 7.5)
        self.set_text_color(110)
        self.cell(
            0, 5, f"Page {self.page_no()} of {{nb}}", align="C", new_x="LMARGIN", new_y="NEXT"
        )
        self.set_text_color(0)


def write_crfs(
    study: Study,
    annotations: Mapping[str, FormAnnotations],
    out_dir: Path,
    created: datetime | None = None,
) -> tuple[Path, Path, CrfPages]:
    """Write `acrf.pdf` and `blankcrf.pdf` into `out_dir`, dated `created` (the export's
    moment; now by default); return their paths and the pages of each form in acrf.pdf (what
    Define-XML's collected origins point to)."""
    acrf, pages = render_crf(study, annotations, created)
    blank, _blank_pages = render_crf(study, None, created)
    acrf_path, blank_path = out_dir / ACRF_PDF, out_dir / BLANK_CRF_PDF
    acrf_path.write_bytes(acrf)
    blank_path.write_bytes(blank)
    return acrf_path, blank_path, pages


def render_crf(
    study: Study,
    annotations: Mapping[str, FormAnnotations] | None,
    created: datetime | None = None,
) -> tuple[bytes, CrfPages]:
    """The CRF of every form of `study` in schedule order, annotated when `annotations` are
    given (by form OID), and the pages of each form."""
    kind = "Annotated CRF" if annotations is not None else "Blank CRF"
    info = study.info
    pdf = _CrfDocument(f"{info.oid}: {kind}, eCRF definition version {study.version}")
    pdf.set_title(f"{info.oid} {kind}")
    pdf.set_author(info.sponsor)
    pdf.set_creator("TrialDesk")
    pdf.set_creation_date(created or datetime.now(UTC))
    forms = form_order(study)
    pdf.add_page()
    _title_page(pdf, study, kind, annotations is not None)
    contents_pages = -(-len(forms) // FORMS_PER_CONTENTS_PAGE)
    pdf.form_title = "Contents"
    pdf.add_page()
    pages: dict[str, tuple[int, ...]] = {}
    for number, form in enumerate(forms):
        pdf.form_title = f"{form.title} ({form.oid})"
        if number == 0:  # the contents' placeholder breaks to the first form's page
            pdf.insert_toc_placeholder(
                partial(_contents, pages=contents_pages), pages=contents_pages
            )
        else:
            pdf.add_page()
        first = pdf.page_no()
        pdf.start_section(f"{form.title} ({form.oid})")
        _form(pdf, study, form, None if annotations is None else annotations[form.oid])
        pages[form.oid] = tuple(range(first, pdf.page_no() + 1))
    return bytes(pdf.output()), CrfPages(pages)


def form_order(study: Study) -> list[FormDef]:
    """The forms in the order a subject meets them: by first scheduled visit, then the log
    forms, then any other form of the definition."""
    oids: list[str] = []
    for visit in study.schedule.visits:
        oids += [entry.form for entry in visit.forms if entry.form not in oids]
    oids += [log.form for log in study.schedule.log_forms if log.form not in oids]
    oids += [oid for oid in study.forms if oid not in oids]
    return [study.forms[oid] for oid in oids if oid in study.forms]


def _title_page(pdf: _CrfDocument, study: Study, kind: str, annotated: bool) -> None:
    info = study.info
    pdf.set_y(60)
    pdf.set_font(FONT, "B", 22)
    pdf.multi_cell(0, 11, f"{info.oid}: {kind}", align="C", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font(FONT, "", 13)
    pdf.multi_cell(0, 7, info.name, align="C", new_x="LMARGIN", new_y="NEXT")
    pdf.ln(6)
    pdf.set_font(FONT, "", 10)
    lines = [
        f"Protocol: {info.protocol}",
        f"Sponsor: {info.sponsor}",
        f"eCRF definition version {study.version} ({study.mdv_oid})",
        f"{len(study.forms)} forms",
    ]
    if annotated:
        lines.append(
            "Annotations: the SDTM variable each item is submitted in (SDTMIG 3.4), "
            f"coloured by domain; {NOT_SUBMITTED} marks an item that is collected but not "
            "submitted."
        )
    for line in lines:
        pdf.multi_cell(0, 6, line, align="C", new_x="LMARGIN", new_y="NEXT")


def _contents(pdf: FPDF, outline: list[OutlineSection], pages: int) -> None:
    """The contents on `pages` pages (fpdf2 reserved them; it calls this at the end with the
    sections, one per form), the last ones left blank when the lines fit on fewer."""
    last = pdf.page_no() + pages - 1
    pdf.set_font(FONT, "B", 14)
    pdf.cell(0, 9, "Contents", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font(FONT, "", 9)
    for section in outline:
        link = pdf.add_link(page=section.page_number)
        pdf.cell(160, 5.4, section.name, link=link)
        pdf.cell(
            20, 5.4, str(section.page_number), align="R", link=link, new_x="LMARGIN", new_y="NEXT"
        )
    while pdf.page_no() < last:
        pdf.add_page()


def _form(
    pdf: _CrfDocument, study: Study, form: FormDef, annotations: FormAnnotations | None
) -> None:
    pdf.set_font(FONT, "B", 15)
    paragraph(pdf, form.title, 8)
    pdf.set_font(FONT, "", 9)
    paragraph(pdf, f"Form OID {form.oid} · name {form.name} · version {form.version}", 5)
    paragraph(pdf, scheduled_at(study, form.oid), 5)
    if form.description:
        paragraph(pdf, form.description, 5)
    colours: dict[str, tuple[int, int, int]] = {}
    if annotations is not None:
        colours = _domain_box(pdf, annotations)
    for group in form.item_groups:
        pdf.ln(3)
        _group(pdf, study, form, group, annotations, colours)


def scheduled_at(study: Study, form_oid: str) -> str:
    """Where the form is entered, in words: the visits that schedule it, or a log form."""
    visits = [
        f"{visit.name} ({visit.visitnum:g}{'' if entry.mandatory else ', if applicable'})"
        for visit in study.schedule.visits
        for entry in visit.forms
        if entry.form == form_oid
    ]
    log = next((log for log in study.schedule.log_forms if log.form == form_oid), None)
    parts = []
    if visits:
        parts.append("Visits: " + ", ".join(visits))
    if log is not None:
        parts.append(
            "Log form, entered at any time" + (", one form per event" if log.repeating else "")
        )
    return "; ".join(parts) or "Not scheduled at any visit"


def _domain_box(pdf: _CrfDocument, annotations: FormAnnotations) -> dict[str, tuple[int, int, int]]:
    """The box of the SDTM domains the form feeds, each in its colour; the colours by domain."""
    pdf.ln(2)
    pdf.set_font(FONT, "B", 10)
    pdf.set_draw_color(0)
    colours: dict[str, tuple[int, int, int]] = {}
    if not annotations.domains:
        paragraph(pdf, NOT_SUBMITTED, 6, NOT_SUBMITTED_COLOUR)
    for number, (domain, line) in enumerate(annotations.domains.items()):
        colours[domain] = DOMAIN_COLOURS[number % len(DOMAIN_COLOURS)]
        paragraph(pdf, line, 6, colours[domain])
    return colours


def _group(
    pdf: _CrfDocument,
    study: Study,
    form: FormDef,
    group: ItemGroupDef,
    annotations: FormAnnotations | None,
    colours: Mapping[str, tuple[int, int, int]],
) -> None:
    headings = ["Question", "Item", "Data type", "Answers (code = decode)"]
    rows = []
    for item in group.items:
        row = [
            Cell(text)
            for text in (
                _question(item),
                f"{item.name}\n{item.oid}",
                _data_type(study, item),
                _answers(study, item),
            )
        ]
        if annotations is not None:
            found = annotations.of(item)
            fill = colours.get(found[0].domain) if found else NOT_SUBMITTED_COLOUR
            text = "\n".join(_annotation_text(a, colours) for a in found) or NOT_SUBMITTED
            row.append(Cell(text, fill, bold=True))
        rows.append(row)
    widths = BLANK_WIDTHS if annotations is None else ANNOTATED_WIDTHS
    if pdf.get_y() + GROUP_TITLE_SPACE + row_height(pdf, FONT, widths, rows[0]) > (
        pdf.page_break_trigger
    ):
        pdf.add_page()  # the group's title stays with its first item
    pdf.set_font(FONT, "B", 11)
    repeats = "repeating: one row per record" if group.repeating else "not repeating"
    paragraph(pdf, f"{group.label} ({group.oid}, {repeats})", 6)
    if group.show_if:
        pdf.set_font(FONT, "", 8.5)
        paragraph(pdf, f"Shown if {group.show_if}", 4.5)
    draw_table(pdf, FONT, widths, headings if annotations is None else [*headings, "SDTM"], rows)
    if group.rows:
        _preset_rows(pdf, group)


def _question(item: ItemDef) -> str:
    lines = [item.label + (" (required)" if item.required else "")]
    if item.derivation:
        shown = len(item.derivation) <= DERIVATION_SHOWN
        lines.append(f"Derived: {item.derivation}" if shown else "Derived by the eCRF")
    if item.show_if:
        lines.append(f"Shown if {item.show_if}")
    if item.help:
        lines.append(f"Help: {item.help}")
    return "\n".join(lines)


def _data_type(study: Study, item: ItemDef) -> str:
    parts = [item.type.value.replace("_", " ")]
    if item.length is not None:
        parts.append(f"length {item.length}")
    if item.decimals is not None:
        parts.append(f"{item.decimals} decimal{'s' if item.decimals != 1 else ''}")
    if item.units is not None:
        unit = study.units.get(item.units)
        parts.append(f"unit {unit.symbol if unit else item.units}")
    if item.hard_range is not None:
        parts.append(f"range {item.hard_range.describe()}")
    if item.soft_range is not None:
        parts.append(f"expected {item.soft_range.describe()}")
    if item.type is DataType.MULTICHOICE:
        parts.append("several answers")
    return ", ".join(parts)


def _answers(study: Study, item: ItemDef) -> str:
    codelist = study.codelists.get(item.codelist or "")
    if codelist is None:
        return ""
    lines = [f"{choice.code} = {choice.decode}" for choice in codelist.items]
    return "\n".join([*lines, f"({codelist.oid})"])


def _annotation_text(annotation: Annotation, colours: Mapping[str, tuple[int, int, int]]) -> str:
    """The annotation as printed: a variable of another domain than the page's first names
    its domain (`DM.RFICDTC`) unless its name or SUPP-- dataset already does."""
    lead = next(iter(colours), annotation.domain)
    text = annotation.text
    if annotation.domain == lead or text.startswith((annotation.domain, "SUPP")):
        return text
    return f"{annotation.domain}.{text}"


def _preset_rows(pdf: _CrfDocument, group: ItemGroupDef) -> None:
    """The fixed rows of a repeating group (one per criterion, per test), their preset items
    as columns."""
    names = [item.name for item in group.items if any(item.name in row for row in group.rows)]
    labels = {item.name: item.label for item in group.items}
    pdf.ln(2)
    pdf.set_font(FONT, "B", 9)
    paragraph(pdf, f"Preset rows of {group.label} ({len(group.rows)})", 5)
    rows = [[Cell(row.get(name, "")) for name in names] for row in group.rows]
    headings = [f"{labels[name]} ({name})" for name in names]
    draw_table(pdf, FONT, _preset_widths(headings, names, group.rows), headings, rows)


def _preset_widths(
    headings: list[str], names: list[str], rows: tuple[dict[str, str], ...]
) -> list[float]:
    """Columns over the 180 mm weighed by their longest value or heading word, from 8 to 60
    characters: codes keep one line, long texts wrap."""
    weights = [
        min(
            60,
            max(8, *(len(word) for word in heading.split()), *(len(r.get(name, "")) for r in rows)),
        )
        for heading, name in zip(headings, names, strict=True)
    ]
    return [180 * weight / sum(weights) for weight in weights]
