"""Tables of the CRF PDFs: rows of wrapped text cells, a coloured heading row repeated after
each page break, a row never split across pages.

fpdf2's own `FPDF.table` lays every cell out twice with its general line breaker (once to
measure the row, once to draw it), which took three quarters of the time of a CRF. Here each
cell is wrapped once, greedily at spaces (a word wider than the cell is cut), from the widths
of its words, remembered per font: fpdf2 sets text without kerning or shaping here, so a
line's width is the sum of its words' and spaces' widths. Lines are then placed as text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from fpdf import FPDF

LINE_HEIGHT = 4.0
PADDING = 1.0
FONT_SIZE = 8.0
HEADING_FILL = (60, 70, 90)
BORDER_GREY = 150

Colour = tuple[int, int, int]

_WIDTHS: dict[tuple[str, str, float, str], float] = {}
"""Widths in mm of words set in a font (family, style, size): the same words recur across
items, forms and the two CRFs."""


@dataclass(frozen=True)
class Cell:
    """A cell's text (lines separated by newlines), its fill colour and weight."""

    text: str
    fill: Colour | None = None
    bold: bool = False


def draw_table(
    pdf: FPDF,
    font: str,
    widths: Sequence[float],
    headings: Sequence[str],
    rows: Sequence[Sequence[Cell]],
) -> None:
    """Draw the table from the left margin at the current position; `widths` in mm."""
    heading = [Cell(text, HEADING_FILL, bold=True) for text in headings]
    heading_lines = _lines(pdf, font, widths, heading)
    first = _height(_lines(pdf, font, widths, rows[0])) if rows else 0
    if pdf.get_y() + _height(heading_lines) + first > pdf.page_break_trigger:
        pdf.add_page()  # a heading is never left alone at the foot of a page
    _draw_row(pdf, font, widths, heading_lines, heading, white=True)
    for row in rows:
        lines = _lines(pdf, font, widths, row)
        height = _height(lines)
        if pdf.get_y() + height > pdf.page_break_trigger:
            pdf.add_page()
            _draw_row(pdf, font, widths, heading_lines, heading, white=True)
        _draw_row(pdf, font, widths, lines, row, white=False)


def paragraph(pdf: FPDF, text: str, height: float, fill: Colour | None = None) -> None:
    """`text` in the current font across the page from the left margin, wrapped, `height` mm
    a line; in a bordered box filled with `fill` when given. It starts a page when it does
    not fit on this one."""
    padding = PADDING if fill is not None else 0.0
    lines = wrap(pdf, text, pdf.epw - 2 * padding)
    total = len(lines) * height
    if pdf.get_y() + total > pdf.page_break_trigger:
        pdf.add_page()
    top = pdf.get_y()
    if fill is not None:
        pdf.set_fill_color(*fill)
        pdf.rect(pdf.l_margin, top, pdf.epw, total, style="DF")
    baseline = top + height / 2 + 0.35 * pdf.font_size
    for number, line in enumerate(lines):
        if line:
            pdf.text(pdf.l_margin + padding, baseline + number * height, line)
    pdf.set_xy(pdf.l_margin, top + total)


def _lines(pdf: FPDF, font: str, widths: Sequence[float], row: Sequence[Cell]) -> list[list[str]]:
    lines = []
    for width, cell in zip(widths, row, strict=True):
        pdf.set_font(font, "B" if cell.bold else "", FONT_SIZE)
        lines.append(wrap(pdf, cell.text, width - 2 * PADDING))
    return lines


def wrap(pdf: FPDF, text: str, width: float) -> list[str]:
    """The lines of `text` in the current font within `width` mm: its own line breaks kept,
    words moved to the next line when they do not fit, a word wider than a line cut."""
    space = _width(pdf, " ")
    lines: list[str] = []
    for paragraph in text.split("\n"):
        line, line_width = "", 0.0
        for word in paragraph.split(" "):
            word_width = _width(pdf, word)
            if line and line_width + space + word_width <= width:
                line, line_width = f"{line} {word}", line_width + space + word_width
                continue
            if line:
                lines.append(line)
            while word_width > width and len(word) > 1:
                cut = _fitting(pdf, word, width)
                lines.append(word[:cut])
                word = word[cut:]
                word_width = _width(pdf, word)
            line, line_width = word, word_width
        lines.append(line)
    return lines


def _fitting(pdf: FPDF, word: str, width: float) -> int:
    """How many leading characters of `word` fit in `width` (at least one), up to its last
    dot or hyphen that fits when it has one (an OID breaks between its parts)."""
    used = 0.0
    for count, character in enumerate(word):
        used += _width(pdf, character)
        if used > width:
            part = max(word.rfind(".", 0, count), word.rfind("-", 0, count))
            return part + 1 if part > 0 else max(count, 1)
    return len(word)


def _width(pdf: FPDF, word: str) -> float:
    key = (pdf.font_family, pdf.font_style, pdf.font_size_pt, word)
    known = _WIDTHS.get(key)
    if known is None:
        known = _WIDTHS[key] = pdf.get_string_width(word)
    return known


def row_height(pdf: FPDF, font: str, widths: Sequence[float], row: Sequence[Cell]) -> float:
    """The height in mm the row takes."""
    return _height(_lines(pdf, font, widths, row))


def _height(lines: list[list[str]]) -> float:
    return max(len(cell) for cell in lines) * LINE_HEIGHT + 2 * PADDING


def _draw_row(
    pdf: FPDF,
    font: str,
    widths: Sequence[float],
    lines: list[list[str]],
    row: Sequence[Cell],
    *,
    white: bool,
) -> None:
    top, height, x = pdf.get_y(), _height(lines), pdf.l_margin
    pdf.set_draw_color(BORDER_GREY)
    pdf.set_text_color(255 if white else 0)
    for width, cell, cell_lines in zip(widths, row, lines, strict=True):
        if cell.fill is not None:
            pdf.set_fill_color(*cell.fill)
        pdf.rect(x, top, width, height, style="DF" if cell.fill is not None else "D")
        pdf.set_font(font, "B" if cell.bold else "", FONT_SIZE)
        baseline = top + PADDING + LINE_HEIGHT / 2 + 0.35 * pdf.font_size
        for number, line in enumerate(cell_lines):
            if line:
                pdf.text(x + PADDING, baseline + number * LINE_HEIGHT, line)
        x += width
    pdf.set_text_color(0)
    pdf.set_xy(pdf.l_margin, top + height)
