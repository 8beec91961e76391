"""What a mapping declares about related records (`relrec:` in `exports/<DOMAIN>.yaml`); the
RELREC dataset built from these declarations is `app.sdtm.relrec`."""

from __future__ import annotations

from pydantic import Field, model_validator

from app.study.model import Definition


class RelatedRecords(Definition):
    """Records of this domain related to records of domain `with` (SDTMIG 3.4 §8.2, RELREC).

    Record level: `item` names, per source form (by form name), the item of the record's row
    that cites the related record, and `matches` the variable of `with` it equals (an episode
    form's AE number is the AE's AESPID); each record and the records it cites share a RELID,
    identified by their --SEQ. Dataset level: `dataset` pairs a variable of this domain with
    one of `with` (`{FAGRPID: CESPID}`): records with equal values are related, one record of
    `with` to many of this domain (RELTYPE ONE and MANY)."""

    with_: str = Field(alias="with", pattern=r"^[A-Z]{2}$", description="related domain")
    item: dict[str, str] = Field(default_factory=dict, description="form name -> citing item")
    matches: str | None = Field(default=None, description="variable of `with` it equals")
    dataset: dict[str, str] = Field(default_factory=dict, description="variable -> variable")

    model_config = Definition.model_config | {"populate_by_name": True}

    @model_validator(mode="after")
    def _one_level(self) -> RelatedRecords:
        record_level = bool(self.item) and self.matches is not None
        if record_level == (len(self.dataset) == 1):
            raise ValueError(
                "relate records either by `item` and `matches` or by one `dataset` pair"
            )
        return self
