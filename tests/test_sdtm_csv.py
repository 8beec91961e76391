"""Text typed into the eCRF that a spreadsheet would run as a formula is defused in the CSV
datasets and kept as typed in SAS XPORT and Dataset-JSON."""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime
from pathlib import Path

import pyreadstat

from app.sdtm.dataset import Column, Table
from app.sdtm.writers import write_table
from app.study.loader import Study

TYPED = [
    '=HYPERLINK("http://example.invalid","Headache")',
    "+1+cmd|' /C calc'!A0",
    "-2+3",
    "@SUM(A1:A9)",
    "\tRash",
    "\rNausea",
    "-1.5",
    "Headache = pain",
    "'quoted'",
]
CSV = [
    '\'=HYPERLINK("http://example.invalid","Headache")',
    "'+1+cmd|' /C calc'!A0",
    "'-2+3",
    "'@SUM(A1:A9)",
    "'\tRash",
    "'\rNausea",
    "-1.5",  # a number: a spreadsheet reads it as -1.5, never as a formula
    "Headache = pain",
    "'quoted'",
]


def test_formula_text_is_defused_in_csv_and_kept_in_xpt_and_dataset_json(
    zm001: Study, tmp_path: Path
) -> None:
    table = Table(
        "AE",
        "Adverse Events",
        [
            Column("USUBJID", "Unique Subject Identifier", "Char", "string"),
            Column("AESEQ", "Sequence Number", "Num", "integer"),
            Column("AETERM", "Reported Term for the Adverse Event", "Char", "string"),
        ],
        [["ZM001-01-001", float(n), term] for n, term in enumerate(TYPED, start=1)],
    )
    formats = frozenset({"xpt", "json", "csv"})
    dataset = write_table(table, zm001, tmp_path, formats, datetime(2026, 1, 1, tzinfo=UTC))

    with dataset.files["csv"].open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["USUBJID", "AESEQ", "AETERM"]
    assert [row[2] for row in rows[1:]] == CSV
    assert [row[1] for row in rows[1:]] == [str(n) for n in range(1, len(TYPED) + 1)]

    frame, _meta = pyreadstat.read_xport(str(dataset.files["xpt"]))
    assert list(frame["AETERM"]) == TYPED

    written = json.loads(dataset.files["json"].read_text(encoding="utf-8"))
    assert [row[2] for row in written["rows"]] == TYPED
