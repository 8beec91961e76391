"""SDTMIG 3.4 rule checks run on what was written (the Dataset-JSON file, else the CSV, else the
XPT file): required and expected variables present in spec order, required values never null,
Num variables numeric, unique --SEQ per subject, ISO 8601 dates, no study day 0, controlled
terminology, USUBJID built from STUDYID and SUBJID, unique SUPP-- qualifiers.

Each problem is one readable line naming the dataset, the subject and the variable.
"""

from __future__ import annotations

import csv
import json
import math
import re
from collections.abc import Iterator
from pathlib import Path

from app.sdtm.dataset import SdtmDataset
from app.sdtm.derive import Value
from app.sdtm.spec import DomainSpec, SdtmSpecs, codelist_values
from app.study.loader import Study

ISO_8601 = re.compile(
    r"^\d{4}(-(0[1-9]|1[0-2])(-(0[1-9]|[12]\d|3[01])"
    r"(T([01]\d|2[0-3])(:[0-5]\d(:[0-5]\d(\.\d+)?)?)?)?)?)?$"
)
"""ISO 8601 date/time as SDTM uses it: precision may stop at any part (partial dates)."""
SUPP_KEY = ("USUBJID", "IDVAR", "IDVARVAL", "QNAM")


def check_dataset(dataset: SdtmDataset, specs: SdtmSpecs, study: Study) -> list[str]:
    """Every SDTMIG rule `dataset` breaks, read back from its written file."""
    columns, rows = read_written(dataset)
    if dataset.name.startswith("SUPP"):
        return _check_supp(dataset.name, columns, rows)
    spec = specs.domain(dataset.name)
    if spec is None:
        return [f"{dataset.name}: no mapping describes this dataset"]
    return _check_domain(spec, columns, rows, study)


def read_written(dataset: SdtmDataset) -> tuple[list[str], list[list[Value]]]:
    """Column names and rows of a written dataset: Dataset-JSON preferred, else CSV (every
    value text, an empty one null), else XPT (an empty text or a missing number null)."""
    if "json" in dataset.files:
        content = json.loads(dataset.files["json"].read_text(encoding="utf-8"))
        return [column["name"] for column in content["columns"]], content["rows"]
    if "csv" in dataset.files:
        return _read_csv(dataset.files["csv"])
    import pyreadstat  # here: it imports pandas, half a second, and only XPT needs it

    frame, _meta = pyreadstat.read_xport(str(dataset.files["xpt"]))
    rows = [
        [None if value == "" or (isinstance(value, float) and math.isnan(value)) else value
         for value in row]
        for row in frame.itertuples(index=False)
    ]  # fmt: skip
    return list(frame.columns), rows


def _read_csv(path: Path) -> tuple[list[str], list[list[Value]]]:
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle)
        columns = next(reader)
        return columns, [[value or None for value in row] for row in reader]


def _records(columns: list[str], rows: list[list[Value]]) -> Iterator[dict[str, Value]]:
    for row in rows:
        yield dict(zip(columns, row, strict=True))


def _check_domain(
    spec: DomainSpec, columns: list[str], rows: list[list[Value]], study: Study
) -> list[str]:
    name = spec.domain
    problems = []
    expected = [var.name for var in spec.variables if var.core in ("Req", "Exp")]
    missing = [variable for variable in expected if variable not in columns]
    problems += [
        f"{name}: required/expected variable {variable} is missing" for variable in missing
    ]
    present = [column for column in columns if column in expected]
    if present != [variable for variable in expected if variable in columns]:
        problems.append(f"{name}: variables are not in the order of the mapping: {present}")
    required = [var.name for var in spec.variables if var.core == "Req" and var.name in columns]
    controlled = {
        var.name: set(codelist_values(study, var.codelist))
        for var in spec.variables
        if var.codelist is not None and not var.codelist.extensible and var.name in columns
    }
    numeric = [var.name for var in spec.variables if var.type == "Num" and var.name in columns]
    dates = [column for column in columns if column.endswith("DTC")]
    days = [column for column in columns if column.endswith("DY")]
    seen: set[tuple[Value, Value, Value]] = set()
    for record in _records(columns, rows):
        where = f"{name} {record.get('USUBJID')}"
        problems += [
            f"{where}: {var} (Req) is null" for var in required if record[var] in (None, "")
        ]
        seq = record.get(spec.seq_name)
        if seq is not None:
            # per subject; TS numbers the values of each parameter (TSSEQ within TSPARMCD)
            key = (record.get("USUBJID"), record.get(f"{name}PARMCD"), seq)
            if key in seen:
                problems.append(f"{where}: {spec.seq_name} {seq} is not unique")
            seen.add(key)
        for variable in numeric:
            if record[variable] is not None and not _is_number(record[variable]):
                problems.append(f"{where}: Num variable {variable} holds {record[variable]!r}")
        for variable in dates:
            value = record[variable]
            if value not in (None, "") and not ISO_8601.match(str(value)):
                problems.append(f"{where}: {variable} {value!r} is not ISO 8601")
        for variable in days:
            if record[variable] in (0, "0"):
                problems.append(f"{where}: {variable} is 0 (SDTM has no day 0)")
        for variable, allowed in controlled.items():
            value = record[variable]
            if value not in (None, "") and value not in allowed:
                problems.append(f"{where}: {variable} {value!r} is not in its code list")
        problems += _usubjid_problems(where, record)
    return problems


def _is_number(value: Value) -> bool:
    """A number, or (read from CSV) text that is one."""
    if isinstance(value, int | float):
        return True
    try:
        float(str(value))
    except ValueError:
        return False
    return True


def _usubjid_problems(where: str, record: dict[str, Value]) -> list[str]:
    if "USUBJID" not in record:
        return []  # a trial design dataset (TS, TA, ...) has no subjects
    usubjid, studyid = record.get("USUBJID"), record.get("STUDYID")
    if "SUBJID" in record:
        if usubjid != f"{studyid}-{record['SUBJID']}":
            return [f"{where}: USUBJID is not STUDYID-SUBJID"]
    # USUBJID is null only in records of a dataset-level relationship (RELREC)
    elif usubjid is not None and not str(usubjid).startswith(f"{studyid}-"):
        return [f"{where}: USUBJID does not start with STUDYID-"]
    return []


def _check_supp(name: str, columns: list[str], rows: list[list[Value]]) -> list[str]:
    problems = []
    seen: set[tuple[Value, ...]] = set()
    for record in _records(columns, rows):
        where = f"{name} {record.get('USUBJID')}"
        key = tuple(record.get(column) for column in SUPP_KEY)
        if key in seen:
            problems.append(f"{where}: qualifier {record.get('QNAM')} repeats for one record")
        seen.add(key)
        if record.get("QVAL") in (None, ""):
            problems.append(f"{where}: {record.get('QNAM')} has no QVAL")
        if len(str(record.get("QNAM") or "")) > 8:
            problems.append(f"{where}: QNAM {record.get('QNAM')} is longer than 8")
    return problems
