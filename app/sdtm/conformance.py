"""The last step of building SDTM tables: what a submission expects of every dataset whatever
its content (SDTMIG 3.4 §3.2 and FDA's Technical Conformance Guide).

- A dataset without records is not submitted (it breaks readers and rules engines).
- Rows are sorted by the key variables the dataset declares (Define-XML KeySequence).
- A permissible variable null in every row is dropped; required and expected ones stay
  even when empty (SDTMIG 3.4 §4.1.5: expected variables are always present).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from app.sdtm.dataset import Column, Table
from app.sdtm.derive import Value

_NULL, _NUMBER, _TEXT = 0, 1, 2


def submitted(table: Table, permissible: Iterable[str] = ()) -> Table | None:
    """`table` as it is submitted: None without rows; otherwise without the `permissible`
    columns that are null in every row, rows sorted by its key columns."""
    if not table.rows:
        return None
    dropped = {
        i
        for i, column in enumerate(table.columns)
        if column.name in set(permissible) and all(row[i] is None for row in table.rows)
    }
    columns = [column for i, column in enumerate(table.columns) if i not in dropped]
    rows = [[value for i, value in enumerate(row) if i not in dropped] for row in table.rows]
    keys = _key_positions(columns)
    rows.sort(key=lambda row: tuple(_sort_key(row[i]) for i in keys))
    return Table(table.name, table.label, columns, rows)


def _key_positions(columns: Sequence[Column]) -> list[int]:
    keyed = [(column.key_sequence, i) for i, column in enumerate(columns) if column.key_sequence]
    return [i for _order, i in sorted(keyed)]


def _sort_key(value: Value) -> tuple[int, float, str]:
    """Nulls first (SAS sorts missing values lowest), numbers by value, text by character."""
    if value is None:
        return (_NULL, 0.0, "")
    if isinstance(value, int | float):
        return (_NUMBER, float(value), "")
    return (_TEXT, 0.0, str(value))
