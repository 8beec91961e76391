"""The kinds of trial-design records (SDTM TS, TA, TE, TV, TI) and the fields each has: the
contract between their builder (`app.sdtm.trial_design`) and the mappings that read them
(`trial_design` record sources of `exports/`, whose variables read a field by `item`)."""

from __future__ import annotations

from typing import Literal

TrialDesignKind = Literal["TS", "TA", "TE", "TV", "TI"]
TRIAL_DESIGN_FIELDS: dict[str, tuple[str, ...]] = {
    "TS": ("STUDYID", "TSSEQ", "TSPARMCD", "TSPARM", "TSVAL", "TSVALCD", "TSVCDREF", "TSVCDVER"),
    "TA": ("STUDYID", "ARMCD", "ARM", "TAETORD", "ETCD", "ELEMENT", "TABRANCH", "TATRANS",
           "EPOCH"),
    "TE": ("STUDYID", "ETCD", "ELEMENT", "TESTRL", "TEENRL", "TEDUR"),
    "TV": ("STUDYID", "VISITNUM", "VISIT", "VISITDY", "ARMCD", "TVSTRL", "TVENRL"),
    "TI": ("STUDYID", "IETESTCD", "IETEST", "IECAT", "TIVERS"),
}  # fmt: skip
"""The fields of each kind of trial-design record (`app.sdtm.trial_design`), read by `item`."""
