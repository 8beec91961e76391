"""An SDTM dataset in memory (`Table`: columns and rows) and what was written of it
(`SdtmDataset`), with the OIDs that tie the data files to Define-XML."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from app.sdtm.derive import Value
from app.sdtm.spec import VariableType
from app.study.loader import Study

JsonDataType = Literal["string", "integer", "double"]


def metadata_version_oid(study: Study) -> str:
    """The Define-XML MetaDataVersion OID the Dataset-JSON files refer to."""
    return f"MDV.{study.info.oid}.SDTMIG.3.4"


def item_group_oid(dataset: str) -> str:
    """Define-XML ItemGroupDef OID of a dataset, e.g. IG.DM, IG.SUPPAE."""
    return f"IG.{dataset}"


def item_oid(dataset: str, variable: str) -> str:
    """Define-XML ItemDef OID of a variable, e.g. IT.DM.USUBJID."""
    return f"IT.{dataset}.{variable}"


def format_number(value: float) -> str:
    """A number as text without a needless decimal part: 3.0 -> "3", 99.01 -> "99.01"."""
    return str(int(value)) if value.is_integer() else repr(value)


@dataclass(frozen=True)
class Column:
    """A dataset variable as the writers need it."""

    name: str
    label: str
    type: VariableType
    json_type: JsonDataType
    key_sequence: int | None = None


@dataclass
class Table:
    """A dataset being built: columns in order and one list of values per record."""

    name: str
    label: str
    columns: list[Column]
    rows: list[list[Value]] = field(default_factory=list)

    def index(self, name: str) -> int:
        return next(i for i, column in enumerate(self.columns) if column.name == name)


@dataclass(frozen=True)
class SdtmDataset:
    """A written dataset: `name` (DM, SUPPAE), `label`, number of `rows`, `files` by format
    (xpt, json, csv) and the observed maximum length of each Char variable (`lengths`, for
    Define-XML; 1 for a variable that is always empty). A dataset described from the
    definition alone (`app.exporters.define.planned_datasets`) has `rows` None, files that
    were not written, and the lengths the definition allows each variable. `variables` names
    the variables written, in order (permissible ones null in every row are not); None for
    one described from the definition, which has every variable of its mapping."""

    name: str
    label: str
    rows: int | None
    files: dict[str, Path]
    lengths: dict[str, int]
    variables: tuple[str, ...] | None = None

    def has_variable(self, name: str) -> bool:
        return self.variables is None or name in self.variables
