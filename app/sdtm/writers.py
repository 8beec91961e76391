"""Writing an SDTM dataset as SAS XPORT v5 (pyreadstat), CDISC Dataset-JSON 1.1 (streamed
with the json module) and CSV, and the SDTMIG 3.4 §4.5.3 split of text over 200 characters.
CSV text that a spreadsheet would run as a formula is defused (`spreadsheet_safe`).

XPORT v5 limits are checked before anything is written, because pyreadstat silently
truncates labels and writes over-long values: names at most 8 characters, labels at most 40,
values at most 200 bytes, ASCII only. Non-ASCII text is an error naming the subject and the
variable (transliterating clinical text would change what the site entered).
"""

from __future__ import annotations

import csv
import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from app.exporters.scope import Progress, no_progress
from app.sdtm.dataset import (
    Column,
    SdtmDataset,
    Table,
    format_number,
    item_group_oid,
    item_oid,
    metadata_version_oid,
)
from app.sdtm.derive import Value
from app.study.loader import Study

if TYPE_CHECKING:
    import pandas as pd

MAX_NAME_LENGTH = 8
MAX_LABEL_LENGTH = 40
MAX_VALUE_BYTES = 200
DATASET_JSON_VERSION = "1.1.0"
SOURCE_SYSTEM = {"name": "TrialDesk", "version": "0.1.0"}
ORIGINATOR = "TrialDesk"


class SdtmWriteError(Exception):
    """A dataset that breaks the SAS XPORT v5 limits; lists every offending value."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        shown = problems[:20]
        more = (
            f"\n  ... and {len(problems) - len(shown)} more" if len(problems) > len(shown) else ""
        )
        super().__init__("cannot write SAS XPORT v5:\n  " + "\n  ".join(shown) + more)


def long_text_pieces(text: str, limit: int = MAX_VALUE_BYTES) -> list[str]:
    """`text` cut into pieces of at most `limit` characters, between words where possible
    (SDTMIG 3.4 §4.5.3.2); the pieces joined give `text` back. The space between two words
    starts the next piece: SAS XPORT drops trailing blanks but keeps leading ones, so every
    format gives the same pieces."""
    pieces = []
    while len(text) > limit:
        cut = text.rfind(" ", 1, limit + 1)
        cut = limit if cut <= 0 else cut
        pieces.append(text[:cut])
        text = text[cut:]
    pieces.append(text)
    return pieces


def supp_qnam(name: str, index: int) -> str:
    """QNAM of the `index`th continuation of a variable split over 200 characters: AETERM1,
    AETERM2; the name is cut so that name and number fit in 8 characters."""
    suffix = str(index)
    return name[: MAX_NAME_LENGTH - len(suffix)] + suffix


def supp_qlabel(label: str, index: int) -> str:
    """QLABEL of the `index`th continuation: the variable's label and the number, in 40."""
    suffix = f" {index}"
    return label[: MAX_LABEL_LENGTH - len(suffix)] + suffix


def write_tables(
    tables: list[Table],
    study: Study,
    out_dir: Path,
    formats: frozenset[str],
    modified: datetime,
    progress: Progress = no_progress,
    *,
    checked: bool = False,
) -> list[SdtmDataset]:
    """Write every table in each of `formats` (xpt, json, csv) as lower-case `<name>.<format>`,
    calling `progress(tables written, tables)` as it goes. Unless the caller has `checked`
    them (`check_xport`), the tables are checked first. `modified` is when the data last
    changed."""
    if not checked:
        check_xport(tables, formats)
    datasets = []
    progress(0, len(tables))
    for done, table in enumerate(tables, start=1):
        datasets.append(write_table(table, study, out_dir, formats, modified))
        progress(done, len(tables))
    return datasets


def check_xport(tables: list[Table], formats: frozenset[str]) -> None:
    """With xpt among `formats`, check every table against the XPORT v5 limits before any
    file is written; raises SdtmWriteError listing what breaks them."""
    if "xpt" in formats:
        problems = [problem for table in tables for problem in xport_problems(table)]
        if problems:
            raise SdtmWriteError(problems)


def write_table(
    table: Table, study: Study, out_dir: Path, formats: frozenset[str], modified: datetime
) -> SdtmDataset:
    """Write one table (already checked by the caller for XPORT, see `write_tables`)."""
    dataset = to_be_written(table, out_dir, formats)
    files = dataset.files
    if "xpt" in files:
        _write_xpt(table, files["xpt"])
    if "json" in files:
        _write_json(table, study, files["json"], dataset.lengths, modified)
    if "csv" in files:
        _write_csv(table, files["csv"])
    return dataset


def to_be_written(table: Table, out_dir: Path, formats: frozenset[str]) -> SdtmDataset:
    """The dataset `write_table` writes of `table`, known before it is written."""
    stem = out_dir / table.name.lower()
    kinds: tuple[str, ...] = ("xpt", "json", "csv")
    files = {kind: stem.with_suffix(f".{kind}") for kind in kinds if kind in formats}
    names = tuple(column.name for column in table.columns)
    return SdtmDataset(
        table.name, table.label, len(table.rows), files, observed_lengths(table), names
    )


def observed_lengths(table: Table) -> dict[str, int]:
    """Longest value (in bytes) of each Char column; 1 for a column that is always empty."""
    lengths = {}
    for i, column in enumerate(table.columns):
        if column.type == "Char":
            lengths[column.name] = max(
                (len(str(row[i]).encode()) for row in table.rows if row[i] is not None),
                default=1,
            )
    return lengths


def xport_problems(table: Table) -> list[str]:
    """Everything in `table` that SAS XPORT v5 cannot hold."""
    problems = []
    if len(table.name) > MAX_NAME_LENGTH:
        problems.append(f"{table.name}: dataset name is longer than {MAX_NAME_LENGTH}")
    if len(table.label) > MAX_LABEL_LENGTH or not table.label.isascii():
        problems.append(f"{table.name}: dataset label {table.label!r} is not ASCII of at most 40")
    for column in table.columns:
        if len(column.name) > MAX_NAME_LENGTH:
            problems.append(f"{table.name}.{column.name}: name is longer than {MAX_NAME_LENGTH}")
        if len(column.label) > MAX_LABEL_LENGTH or not column.label.isascii():
            problems.append(f"{table.name}.{column.name}: label is not ASCII of at most 40")
    usubjid = _column_index(table, "USUBJID")
    for row in table.rows:
        for i, column in enumerate(table.columns):
            value = row[i]
            if not isinstance(value, str):
                continue
            where = f"{table.name}.{column.name}"
            if usubjid is not None:
                where = f"{row[usubjid]}: {where}"
            if not value.isascii():
                problems.append(f"{where}: non-ASCII text {value!r}")
            elif len(value) > MAX_VALUE_BYTES:
                problems.append(f"{where}: value longer than {MAX_VALUE_BYTES} bytes")
    return problems


def _column_index(table: Table, name: str) -> int | None:
    return next((i for i, column in enumerate(table.columns) if column.name == name), None)


def _frame(table: Table) -> pd.DataFrame:
    """The table as a data frame: Char columns as text ("" for null), Num as float (NaN)."""
    import pandas as pd  # here: half a second to import, and only XPT needs it

    data: dict[str, list[Value]] = {}
    for i, column in enumerate(table.columns):
        values = [row[i] for row in table.rows]
        if column.type == "Char":
            data[column.name] = ["" if value is None else value for value in values]
        else:
            data[column.name] = [float("nan") if value is None else value for value in values]
    frame = pd.DataFrame(data, columns=[column.name for column in table.columns])
    for column in table.columns:
        frame[column.name] = frame[column.name].astype(object if column.type == "Char" else float)
    return frame


def _write_xpt(table: Table, path: Path) -> Path:
    import pyreadstat  # here, as pandas (which it imports) in `_frame`

    pyreadstat.write_xport(
        _frame(table),
        str(path),
        file_label=table.label,
        column_labels=[column.label for column in table.columns],
        table_name=table.name,
        file_format_version=5,
    )
    return path


def _json_value(value: Value, column: Column) -> Value | int:
    if column.json_type == "integer" and isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _write_json(
    table: Table, study: Study, path: Path, lengths: dict[str, int], modified: datetime
) -> Path:
    """Dataset-JSON 1.1: metadata first, then one row per line (streamed, not built in memory)."""
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S")
    header = {
        "datasetJSONCreationDateTime": now,
        "datasetJSONVersion": DATASET_JSON_VERSION,
        "fileOID": f"{study.info.oid}.SDTM.{table.name}",
        "dbLastModifiedDateTime": modified.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S"),
        "originator": ORIGINATOR,
        "sourceSystem": SOURCE_SYSTEM,
        "studyOID": study.info.oid,
        "metaDataVersionOID": metadata_version_oid(study),
        "metaDataRef": "define.xml",
        "itemGroupOID": item_group_oid(table.name),
        "records": len(table.rows),
        "name": table.name,
        "label": table.label,
        "columns": [_json_column(table.name, column, lengths) for column in table.columns],
    }
    with path.open("w", encoding="utf-8") as out:
        out.write(json.dumps(header, ensure_ascii=False)[:-1])
        out.write(', "rows": [')
        for n, row in enumerate(table.rows):
            values = [
                _json_value(value, column) for value, column in zip(row, table.columns, strict=True)
            ]
            out.write(("\n" if n == 0 else ",\n") + json.dumps(values, ensure_ascii=False))
        out.write("\n]}\n")
    return path


def _json_column(dataset: str, column: Column, lengths: dict[str, int]) -> dict[str, object]:
    entry: dict[str, object] = {
        "itemOID": item_oid(dataset, column.name),
        "name": column.name,
        "label": column.label,
        "dataType": column.json_type,
    }
    if column.name in lengths:
        entry["length"] = lengths[column.name]
    if column.key_sequence is not None:
        entry["keySequence"] = column.key_sequence
    return entry


def _write_csv(table: Table, path: Path) -> Path:
    with path.open("w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out)
        writer.writerow([column.name for column in table.columns])
        for row in table.rows:
            writer.writerow([_csv_value(value) for value in row])
    return path


def _csv_value(value: Value) -> str:
    if value is None:
        return ""
    return format_number(value) if isinstance(value, float) else spreadsheet_safe(value)


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
"""First characters that make a spreadsheet read a cell as a formula (OWASP, CSV injection)."""
NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)")


def spreadsheet_safe(text: str) -> str:
    """A CSV text cell that a spreadsheet shows as text instead of running it as a formula:
    a leading apostrophe before `=`, `+`, `-`, `@`, tab or carriage return (OWASP's advice).
    A plain number such as a result of "-1.5" is left alone: a spreadsheet reads it as the
    number, never as a formula. XPT and Dataset-JSON keep every value as typed."""
    if text.startswith(FORMULA_STARTS) and not NUMBER.fullmatch(text):
        return "'" + text
    return text
