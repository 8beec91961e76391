"""SDTM Trial Summary (TS) records: one per parameter value (SDTMIG 3.4 §7.6.1).

The values come from the study definition (`study.yaml`, its optional `design:` section,
`app.study.design`), from the trial arms (NARMS), from the data (SSTDTC, the earliest informed
consent of any subject) and from the engine (the SDTM and SDTMIG versions it writes). Coded
values carry TSVALCD, TSVCDREF and TSVCDVER; CDISC terms are at the study's CT version;
ISO 8601 values (dates, durations) name ISO 8601 as their reference.

Terminologies: SDTM CT has no parameter for the versions of the controlled terminology and
coding dictionaries, so each is one record of the sponsor-defined parameter TERMVER
(`exports/README.md`): TSVAL `MedDRA 27.1`, TSVCDREF `MedDRA`, TSVCDVER `27.1`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping

from app.sdtm.derive import Value
from app.study.design import CDISC_CT, Term
from app.study.loader import Study

SDTM_VERSION = "2.0"
SDTMIG_VERSION = "3.4"
"""The SDTM model and implementation guide versions the engine writes (SDTMIG 3.4 is SDTM
2.0's guide)."""
ISO_8601 = "ISO 8601"
TERMINOLOGY_VERSION = ("TERMVER", "Terminology or Dictionary Version")
"""Sponsor-defined: SDTM CT has no TS parameter for terminology versions."""

PARAMETERS = {
    "TITLE": "Trial Title",
    "TPHASE": "Trial Phase Classification",
    "STYPE": "Study Type",
    "TTYPE": "Trial Type",
    "INTMODEL": "Intervention Model",
    "NARMS": "Planned Number of Arms",
    "TBLIND": "Trial Blinding Schema",
    "RANDOM": "Trial is Randomized",
    "ADAPT": "Adaptive Design",
    "HLTSUBJI": "Healthy Subject Indicator",
    "PLANSUB": "Planned Number of Subjects",
    "AGEMIN": "Planned Minimum Age of Subjects",
    "AGEMAX": "Planned Maximum Age of Subjects",
    "SEXPOP": "Sex of Participants",
    "TRT": "Investigational Therapy or Treatment",
    "PCLAS": "Pharmacologic Class",
    "INDIC": "Trial Disease/Condition Indication",
    "THERAREA": "Therapeutic Area",
    "SPONSOR": "Clinical Study Sponsor",
    "REGID": "Registry Identifier",
    "SSTDTC": "Study Start Date",
    "SDTMVER": "SDTM Version",
    "SDTIGVER": "SDTM IG Version",
}
"""TSPARMCD -> TSPARM (CDISC CT code lists C66738 and C67152), in record order."""


def ct_version_date(study: Study) -> str:
    """The CT package's date (`SDTM CT 2025-09-26` -> `2025-09-26`), else the text as given."""
    found = re.search(r"\d{4}-\d{2}-\d{2}", study.info.ct_version)
    return found.group(0) if found else study.info.ct_version


def trial_summary_records(
    study: Study,
    arms: int,
    study_start: str | None,
    dictionaries: Mapping[str, str] | None = None,
) -> list[dict[str, Value]]:
    """The TS records of `study` with `arms` planned arms, the study start date `study_start`
    (None: no consent entered yet, no SSTDTC) and the coding `dictionaries` loaded (name ->
    version; none by default). TSSEQ numbers the values of each parameter 1, 2, ..."""
    ct_date = ct_version_date(study)
    values = sorted(
        _values(study, arms, study_start),
        key=lambda entry: list(PARAMETERS).index(entry[0]),
    )
    terminologies = {CDISC_CT: ct_date, **(dictionaries or {})}
    values += [
        (TERMINOLOGY_VERSION[0], Term(value=f"{name} {version}", reference=name, version=version))
        for name, version in terminologies.items()
    ]
    records: list[dict[str, Value]] = []
    seq: dict[str, int] = {}
    for parmcd, term in values:
        seq[parmcd] = seq.get(parmcd, 0) + 1
        # a plain text value (a title, a number) names no terminology
        coded = term.code is not None or term.version is not None or term.reference == ISO_8601
        version = term.version or (ct_date if term.reference == CDISC_CT else None)
        records.append(
            {
                "STUDYID": study.info.oid,
                "TSSEQ": float(seq[parmcd]),
                "TSPARMCD": parmcd,
                "TSPARM": PARAMETERS.get(parmcd) or TERMINOLOGY_VERSION[1],
                "TSVAL": term.value,
                "TSVALCD": term.code,
                "TSVCDREF": term.reference if coded else None,
                "TSVCDVER": version if coded and term.reference != ISO_8601 else None,
            }
        )
    return records


def _values(study: Study, arms: int, study_start: str | None) -> Iterator[tuple[str, Term]]:
    """(TSPARMCD, value) of every parameter the study gives."""
    info, design = study.info, study.info.design
    yield "SPONSOR", Term(value=info.sponsor)
    if info.registry_id:
        # an NCT number is ClinicalTrials.gov's (SDTMIG 3.4 TS example 1)
        registry = "ClinicalTrials.gov" if info.registry_id.startswith("NCT") else None
        yield (
            "REGID",
            Term(
                value=info.registry_id,
                code=info.registry_id if registry else None,
                reference=registry or CDISC_CT,
            ),
        )
    if study_start:
        yield "SSTDTC", Term(value=study_start, reference=ISO_8601)
    if arms:
        yield "NARMS", Term(value=str(arms))
    yield "SDTMVER", Term(value=SDTM_VERSION)
    yield "SDTIGVER", Term(value=SDTMIG_VERSION)
    if design is None:
        return
    if design.title:
        yield "TITLE", Term(value=design.title)
    if design.planned_subjects is not None:
        yield "PLANSUB", Term(value=str(design.planned_subjects))
    for parmcd, age in (("AGEMIN", design.age_min), ("AGEMAX", design.age_max)):
        if age:
            yield parmcd, Term(value=age, reference=ISO_8601)
    yield from (("TTYPE", term) for term in design.trial_types)
    terms = {
        "TPHASE": design.phase,
        "STYPE": design.study_type,
        "INTMODEL": design.intervention_model,
        "TBLIND": design.blinding,
        "RANDOM": design.randomized,
        "ADAPT": design.adaptive,
        "HLTSUBJI": design.healthy_subjects,
        "SEXPOP": design.sex,
        "TRT": design.treatment,
        "PCLAS": design.pharmacologic_class,
        "INDIC": design.indication,
        "THERAREA": design.therapeutic_area,
    }
    yield from ((parmcd, term) for parmcd, term in terms.items() if term is not None)
