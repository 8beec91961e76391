"""Derived items of the ZM001 forms, computed by the form engine on the real study definition.

Every expected value comes from the build spec (`ZM001-build-spec.md` §5.4, §5.9, §5.10, §5.18,
§5.22, §5.23, §6.1-§6.8), not from the YAML expressions: a failure here means a form's
derivation disagrees with the spec. Values are the canonical text a user sees in the form
("45", "1.82"); None is an empty derived field.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from app.crf.engine import FormEvaluation, evaluate_form
from app.study.loader import Study

Row = Mapping[str, str | None]
GroupValues = Mapping[str, Row | list[Row]]


def evaluate(
    study: Study,
    form_oid: str,
    group_values: GroupValues,
    other_forms: Mapping[str, Mapping[str, str | None]] | None = None,
) -> FormEvaluation:
    """Evaluate a form from {group OID: row} (or a list of rows for a repeating group).

    Fails on an item name the group does not have or a value the item rejects, so that a typo
    in a test cannot pass silently as an unanswered item.
    """
    form = study.form(form_oid)
    groups = {group.oid: group for group in form.item_groups}
    submitted: dict[str, dict[int, Row]] = {}
    for group_oid, value in group_values.items():
        rows = value if isinstance(value, list) else [value]
        names = {item.name for item in groups[group_oid].items}
        for row in rows:
            assert set(row) <= names, f"{group_oid} has no item {set(row) - names}"
        submitted[group_oid] = dict(enumerate(rows, start=1))
    evaluation = evaluate_form(study, form, submitted, other_forms or {})
    assert evaluation.errors == {}
    return evaluation


def derive(
    study: Study,
    form_oid: str,
    group_values: GroupValues,
    other_forms: Mapping[str, Mapping[str, str | None]] | None = None,
) -> dict[str, dict[int, dict[str, str | None]]]:
    """The values of every item (derived ones included) by group OID, repeat and item name."""
    return evaluate(study, form_oid, group_values, other_forms).values


def case(*values: Any, id: str) -> Any:
    return pytest.param(*values, id=id)


# --- §6.6 Age at consent (DM.AGE) ---------------------------------------------------------


@pytest.mark.parametrize(
    ("brthdat", "icdat", "age"),
    [
        case("1979-06-14", "2024-06-15", "45", id="birthday-day-before-consent"),
        case("1979-06-15", "2024-06-15", "45", id="birthday-on-consent-day"),
        case("1979-06-16", "2024-06-15", "44", id="birthday-day-after-consent"),
        case("1979-12-31", "2024-01-01", "44", id="new-year"),
        case("2006-06-15", "2024-06-15", "18", id="18th-birthday-on-consent"),
        case("2006-06-16", "2024-06-15", "17", id="day-before-18th-birthday"),
        case("1954-06-15", "2024-06-15", "70", id="70th-birthday-on-consent"),
        case("2000-02-29", "2024-02-29", "24", id="leap-born-consent-on-leap-day"),
        case("2000-02-29", "2023-02-28", "22", id="leap-born-consent-feb-28-non-leap"),
        case("2000-02-29", "2023-03-01", "23", id="leap-born-consent-mar-1-non-leap"),
        case("2000-02-29", "2024-02-28", "23", id="leap-born-consent-feb-28-leap-year"),
        case("1980-03-01", "2024-02-29", "43", id="consent-on-leap-day-birthday-mar-1"),
        case("1979-06-15", None, None, id="no-consent-date"),
        case(None, "2024-06-15", None, id="no-birth-date"),
    ],
)
def test_age_at_consent(zm001: Study, brthdat: str | None, icdat: str | None, age: str | None):
    values = derive(zm001, "F.DM", {"IG.DM": {"BRTHDAT": brthdat}}, {"IC": {"ICDAT": icdat}})
    assert values["IG.DM"][1]["AGE"] == age


@pytest.mark.parametrize(
    ("brthdat", "flagged"),
    [
        case("2006-06-16", True, id="17-flagged"),
        case("2006-06-15", False, id="18-accepted"),
        case("1954-06-15", False, id="70-accepted"),
        case("1953-06-16", False, id="70-day-before-71st-birthday-accepted"),
        case("1953-06-15", True, id="71-flagged"),
    ],
)
def test_age_outside_18_to_70_is_flagged(zm001: Study, brthdat: str, flagged: bool):
    evaluation = evaluate(
        zm001, "F.DM", {"IG.DM": {"BRTHDAT": brthdat}}, {"IC": {"ICDAT": "2024-06-15"}}
    )
    assert (("IG.DM", 1, "AGE") in evaluation.flags) is flagged


# --- §6.7 BMI and BSA (Mosteller) -----------------------------------------------------------


@pytest.mark.parametrize(
    ("height", "weight", "bmi", "bsa"),
    [
        case("170", "70", "24.2", "1.82", id="170cm-70kg"),
        case("160", "50", "19.5", "1.49", id="160cm-50kg"),
        case("180", "90", "27.8", "2.12", id="180cm-90kg"),
        case("165.5", "62.3", "22.7", "1.69", id="decimal-inputs"),
        case("144", "100", "48.2", "2", id="bsa-exactly-2"),
        case("200", "80", "20", "2.11", id="bmi-exactly-20"),
        case("170", None, None, None, id="no-weight"),
        case(None, "70", None, None, id="no-height"),
    ],
)
def test_htwt_bmi_and_mosteller_bsa(
    zm001: Study, height: str | None, weight: str | None, bmi: str | None, bsa: str | None
):
    values = derive(zm001, "F.HTWT", {"IG.HTWT": {"HEIGHT": height, "WEIGHT": weight}})
    assert (values["IG.HTWT"][1]["BMI"], values["IG.HTWT"][1]["BSA"]) == (bmi, bsa)


@pytest.mark.parametrize(
    ("height", "weight", "bsa"),
    [
        case("170", "70", "1.82", id="170cm-70kg"),
        case("165.5", "62.3", "1.69", id="decimal-inputs"),
        case("144", "100", "2", id="exactly-2"),
        case("120", "25", "0.91", id="small-adult"),
        case("170", None, None, id="no-weight"),
    ],
)
def test_ld_mosteller_bsa(zm001: Study, height: str | None, weight: str | None, bsa: str | None):
    values = derive(zm001, "F.LD", {"IG.LD": {"LDHT": height, "LDWT": weight}})
    assert values["IG.LD"][1]["LDBSADER"] == bsa


# --- §5.9 2019 EULAR/ACR classification -----------------------------------------------------

EACR_CLINICAL = [
    "FEVER", "LEUKOPEN", "THROMBOC", "AIHEMOL", "DELIRIUM", "PSYCHOS", "SEIZURE", "ALOPECIA",
    "ORALULC", "SCLEDLE", "ACLE", "EFFUSION", "PERICARD", "JOINT", "PROTUR", "LNCL2V", "LNCL34",
]  # fmt: skip
EACR_IMMUNOLOGIC = ["APLAB", "C3ORC4", "C3ANDC4", "DSDNASM"]


def eacr(study: Study, present: list[str], ana: str = "Y", answered: list[str] | None = None):
    """EACR_SCORE, EACR_CLIN_ANY and EACR_CLASS with `present` criteria Y and the rest N
    (only `answered` criteria answered at all when it is given)."""
    criteria = answered if answered is not None else EACR_CLINICAL + EACR_IMMUNOLOGIC
    crit = {name: "Y" if name in present else "N" for name in criteria}
    crit |= dict.fromkeys(present, "Y")
    values = derive(study, "F.EACR", {"IG.EACR": {"ANAENTRY": ana}, "IG.EACR.CRIT": crit})
    der = values["IG.EACR.DER"][1]
    return der["EACR_SCORE"], der["EACR_CLIN_ANY"], der["EACR_CLASS"]


@pytest.mark.parametrize(
    ("present", "score", "clinical", "classified"),
    [
        case([], "0", "N", "N", id="nothing-present"),
        case(EACR_CLINICAL + EACR_IMMUNOLOGIC, "51", "Y", "Y", id="everything-51"),
        case(EACR_CLINICAL, "39", "Y", "Y", id="all-clinical-39"),
        case(EACR_IMMUNOLOGIC, "12", "N", "N", id="all-immunologic-12-no-clinical"),
        case(["DSDNASM", "C3ANDC4"], "10", "N", "N", id="score-10-without-clinical"),
        case(["JOINT", "C3ANDC4"], "10", "Y", "Y", id="score-exactly-10"),
        case(["JOINT", "C3ORC4"], "9", "Y", "N", id="score-9"),
        case(["LNCL34"], "10", "Y", "Y", id="class-III-IV-nephritis-alone"),
        case(["FEVER"], "2", "Y", "N", id="fever-2"),
        case(["LEUKOPEN", "THROMBOC", "AIHEMOL"], "4", "Y", "N", id="hematologic-max-4-not-11"),
        case(["LEUKOPEN"], "3", "Y", "N", id="hematologic-leukopenia-3"),
        case(["DELIRIUM", "PSYCHOS", "SEIZURE"], "5", "Y", "N", id="neuro-max-5-not-10"),
        case(["DELIRIUM", "PSYCHOS"], "3", "Y", "N", id="neuro-psychosis-3"),
        case(["ALOPECIA", "ORALULC"], "2", "Y", "N", id="mucocutaneous-two-weight-2-count-once"),
        case(["ALOPECIA", "ORALULC", "SCLEDLE", "ACLE"], "6", "Y", "N", id="mucocut-max-6"),
        case(["ORALULC", "SCLEDLE"], "4", "Y", "N", id="mucocutaneous-discoid-4"),
        case(["EFFUSION", "PERICARD"], "6", "Y", "N", id="serosal-max-6-not-11"),
        case(["EFFUSION"], "5", "Y", "N", id="serosal-effusion-5"),
        case(["PROTUR", "LNCL2V", "LNCL34"], "10", "Y", "Y", id="renal-max-10-not-22"),
        case(["PROTUR", "LNCL2V"], "8", "Y", "N", id="renal-class-II-V-8"),
        case(["PROTUR"], "4", "Y", "N", id="renal-proteinuria-4"),
        case(["C3ORC4", "C3ANDC4"], "4", "N", "N", id="complement-max-4-not-7"),
        case(["APLAB"], "2", "N", "N", id="antiphospholipid-2"),
        case(["ACLE", "DSDNASM"], "12", "Y", "Y", id="acle-plus-dsdna-12"),
        case(["JOINT", "ACLE", "PERICARD", "SEIZURE"], "23", "Y", "Y", id="four-domains-23"),
    ],
)
def test_eacr_score_and_classification(
    zm001: Study, present: list[str], score: str, clinical: str, classified: str
):
    assert eacr(zm001, present) == (score, clinical, classified)


def test_eacr_not_scored_when_ana_entry_criterion_not_met(zm001: Study):
    score, _clinical, classified = eacr(zm001, ["JOINT", "ACLE", "DSDNASM"], ana="N")
    assert (score, classified) == (None, "NA")


def test_eacr_classified_as_soon_as_criteria_met_before_all_answered(zm001: Study):
    assert eacr(zm001, ["JOINT", "DSDNASM"], answered=[]) == ("12", "Y", "Y")


def test_eacr_not_classified_without_clinical_criterion_before_immunology_answered(zm001: Study):
    """§5.9: EACR_CLASS = entry AND EACR_CLIN_ANY AND score >= 10; with every clinical
    criterion answered N, EACR_CLIN_ANY is N and so is the classification, whatever the
    immunologic criteria turn out to be."""
    assert eacr(zm001, [], answered=EACR_CLINICAL) == ("0", "N", "N")


# --- §5.10 SLEDAI-2K --------------------------------------------------------------------------

SLEDAI_WEIGHTS = {
    "SEIZURE": 8, "PSYCHOSIS": 8, "OBS": 8, "VISUAL": 8, "CRANIAL": 8, "HEADACHE": 8, "CVA": 8,
    "VASCULIT": 8, "ARTHRIT": 4, "MYOSITIS": 4, "CASTS": 4, "HEMATUR": 4, "PROTUR": 4,
    "PYURIA": 4, "RASH": 2, "ALOPECIA": 2, "MUCULC": 2, "PLEURISY": 2, "PERICARD": 2,
    "LOWCOMP": 2, "DNABIND": 2, "FEVER": 1, "THROMBO": 1, "LEUKOPEN": 1,
}  # fmt: skip
SEROLOGY = ("LOWCOMP", "DNABIND")


def sledai(study: Study, present: list[str]) -> tuple[str | None, str | None]:
    row = {name: "Y" if name in present else "N" for name in SLEDAI_WEIGHTS}
    values = derive(study, "F.SLEDAI", {"IG.SLEDAI": row})["IG.SLEDAI"][1]
    return values["SLEDAI_TOT"], values["CSLEDAI"]


@pytest.mark.parametrize(
    ("descriptor", "weight"), [case(name, w, id=name) for name, w in SLEDAI_WEIGHTS.items()]
)
def test_sledai_weight_of_each_descriptor(zm001: Study, descriptor: str, weight: int):
    clinical = 0 if descriptor in SEROLOGY else weight
    assert sledai(zm001, [descriptor]) == (str(weight), str(clinical))


@pytest.mark.parametrize(
    ("present", "total", "clinical"),
    [
        case([], "0", "0", id="none"),
        case(list(SLEDAI_WEIGHTS), "105", "101", id="all-24-present-105"),
        case(list(SEROLOGY), "4", "0", id="serology-only-clinical-0"),
        case(["ARTHRIT", "PROTUR", "LOWCOMP", "DNABIND"], "12", "8", id="typical-active-12"),
        case(["RASH", "ALOPECIA", "MUCULC"], "6", "6", id="mucocutaneous-6"),
        case(["FEVER", "THROMBO", "LEUKOPEN", "DNABIND"], "5", "3", id="haematologic-plus-dna"),
        case(["SEIZURE", "ARTHRIT", "RASH", "FEVER", "LOWCOMP"], "17", "15", id="mixed-17"),
    ],
)
def test_sledai_total_and_clinical_sledai(
    zm001: Study, present: list[str], total: str, clinical: str
):
    assert sledai(zm001, present) == (total, clinical)


# --- §6.1 CRS grade (ASTCT 2019) ------------------------------------------------------------

CRS_ROW = {
    "ASMDTM": "2024-03-03 08:00",
    "TMAX": "38.6",
    "FEVERYN": "Y",
    "ANTIPYR_ANTICYT": "N",
    "HYPOTYN": "N",
    "FLUIDYN": "N",
    "VASONUM": "0",
    "VASOPRESSIN": "N",
    "O2DEV": "NONE",
    "TOCINUM": "0",
    "STERYN": "N",
    "ICUYN": "N",
}
CRS_EPISODE = {
    "CRSSTDTM": "2024-03-02 20:00",
    "CRSGRINV": "1",
    "CRSDTHYN": "N",
    "CRSAEID": "AE001",
}
NO_FEVER = {"TMAX": "37.2", "FEVERYN": "N"}
MASKED_FEVER = {"TMAX": "37.4", "FEVERYN": "N", "ANTIPYR_ANTICYT": "Y", "TOCINUM": "1"}
HYPOTENSION = {"HYPOTYN": "Y", "FLUIDYN": "Y"}


def crs_row(**changes: str) -> dict[str, str]:
    row = CRS_ROW | changes
    if row["TOCINUM"] != "0":
        row["TOCIDOS"] = "560"
    return row


def crs(study: Study, rows: list[dict[str, str]], **episode: str) -> dict[str, Any]:
    values = derive(study, "F.CRS", {"IG.CRS": CRS_EPISODE | episode, "IG.CRS.ASM": rows})
    return {
        "rows": [row["CRSGRROW"] for row in values["IG.CRS.ASM"].values()],
        "episode": values["IG.CRS"][1]["CRSGRDER"],
    }


@pytest.mark.parametrize(
    ("changes", "grade"),
    [
        case({}, "1", id="fever-only-1"),
        case(NO_FEVER, "0", id="no-fever-0"),
        case(NO_FEVER | HYPOTENSION, "0", id="no-fever-with-hypotension-0"),
        case(NO_FEVER | HYPOTENSION | {"VASONUM": "1"}, "0", id="no-fever-with-vasopressor-0"),
        case(NO_FEVER | {"O2DEV": "BIPAP"}, "0", id="no-fever-with-bipap-0"),
        case(MASKED_FEVER, "1", id="fever-masked-by-tocilizumab-1"),
        case(MASKED_FEVER | HYPOTENSION, "2", id="masked-fever-hypotension-2"),
        case(MASKED_FEVER | HYPOTENSION | {"VASONUM": "2"}, "4", id="masked-fever-2-pressors-4"),
        case({"FEVERYN": "N", "ANTIPYR_ANTICYT": "Y", "STERYN": "Y"}, "1", id="masked-by-steroid"),
        case(HYPOTENSION, "2", id="hypotension-fluids-only-2"),
        case(HYPOTENSION | {"VASONUM": "1"}, "3", id="one-vasopressor-3"),
        case(
            HYPOTENSION | {"VASONUM": "1", "VASOPRESSIN": "Y"},
            "3",
            id="norepinephrine-plus-vasopressin-3",
        ),
        case(HYPOTENSION | {"VASOPRESSIN": "Y"}, "3", id="vasopressin-alone-3"),
        case(HYPOTENSION | {"VASONUM": "2"}, "4", id="two-vasopressors-4"),
        case({"VASONUM": "1"}, "3", id="vasopressor-without-hypotension-answer-3"),
        case(HYPOTENSION | {"VASONUM": "2", "VASOPRESSIN": "Y"}, "4", id="two-plus-vasopressin-4"),
        case(HYPOTENSION | {"VASONUM": "3"}, "4", id="three-vasopressors-4"),
        case({"O2DEV": "LOW-FLOW NASAL CANNULA", "O2FLOW": "2"}, "2", id="nasal-cannula-2L-2"),
        case({"O2DEV": "LOW-FLOW NASAL CANNULA", "O2FLOW": "6"}, "2", id="nasal-cannula-6L-2"),
        case({"O2DEV": "LOW-FLOW NASAL CANNULA", "O2FLOW": "6.5"}, "3", id="nasal-cannula-6.5L-3"),
        case({"O2DEV": "LOW-FLOW NASAL CANNULA", "O2FLOW": "8"}, "3", id="nasal-cannula-8L-3"),
        case({"O2DEV": "BLOW-BY", "O2FLOW": "4"}, "2", id="blow-by-2"),
        case({"O2DEV": "HIGH-FLOW NASAL CANNULA", "O2FLOW": "40"}, "3", id="high-flow-3"),
        case({"O2DEV": "FACEMASK", "O2FLOW": "8"}, "3", id="facemask-3"),
        case({"O2DEV": "NON-REBREATHER MASK", "O2FLOW": "15"}, "3", id="non-rebreather-3"),
        case({"O2DEV": "VENTURI MASK", "O2FLOW": "10"}, "3", id="venturi-3"),
        case({"O2DEV": "CPAP"}, "4", id="cpap-4"),
        case({"O2DEV": "BIPAP"}, "4", id="bipap-4"),
        case({"O2DEV": "MECHANICAL VENTILATION"}, "4", id="mechanical-ventilation-4"),
        case(
            HYPOTENSION | {"O2DEV": "HIGH-FLOW NASAL CANNULA", "O2FLOW": "30"},
            "3",
            id="hypotension-2-with-high-flow-3",
        ),
        case(
            HYPOTENSION | {"VASONUM": "1", "O2DEV": "LOW-FLOW NASAL CANNULA", "O2FLOW": "3"},
            "3",
            id="vasopressor-3-with-nasal-cannula-2",
        ),
        case(
            HYPOTENSION | {"VASONUM": "2", "O2DEV": "FACEMASK", "O2FLOW": "8"},
            "4",
            id="two-vasopressors-4-with-facemask-3",
        ),
    ],
)
def test_crs_assessment_grade(zm001: Study, changes: dict[str, str], grade: str):
    assert crs(zm001, [crs_row(**changes)])["rows"] == [grade]


@pytest.mark.parametrize(
    ("rows", "death", "row_grades", "episode"),
    [
        case([{}], "N", ["1"], "1", id="single-row"),
        case(
            [{}, HYPOTENSION | {"VASONUM": "1"}, HYPOTENSION],
            "N",
            ["1", "3", "2"],
            "3",
            id="maximum-over-rows-3",
        ),
        case(
            [{"O2DEV": "BIPAP"}, MASKED_FEVER | {"O2DEV": "FACEMASK", "O2FLOW": "8"}, NO_FEVER],
            "N",
            ["4", "3", "0"],
            "4",
            id="maximum-is-first-row-4",
        ),
        case(
            [NO_FEVER | HYPOTENSION | {"VASONUM": "2"}, {}],
            "N",
            ["0", "1"],
            "1",
            id="afebrile-shock-row-does-not-count",
        ),
        case([{}, HYPOTENSION], "Y", ["1", "2"], "5", id="death-attributed-to-crs-5"),
        case(
            [HYPOTENSION | {"VASONUM": "3", "O2DEV": "MECHANICAL VENTILATION"}],
            "Y",
            ["4"],
            "5",
            id="grade-4-then-death-5",
        ),
    ],
)
def test_crs_episode_grade(
    zm001: Study, rows: list[dict[str, str]], death: str, row_grades: list[str], episode: str
):
    result = crs(zm001, [crs_row(**changes) for changes in rows], CRSDTHYN=death)
    assert result == {"rows": row_grades, "episode": episode}


# --- §6.2 ICANS grade (ASTCT 2019) and ICE score (§5.21) --------------------------------------

ICE_ITEMS = {
    "ICEORYR": 1, "ICEORMO": 1, "ICEORCTY": 1, "ICEORHSP": 1,
    "ICENAME": 3, "ICECMD": 1, "ICEWRITE": 1, "ICECOUNT": 1,
}  # fmt: skip


def ice_items(score: int) -> dict[str, str]:
    """ICE item answers adding up to `score` (0-10), the first items correct first."""
    answers, left = {}, score
    for name, points in ICE_ITEMS.items():
        answers[name] = str(min(points, left))
        left -= min(points, left)
    return answers


ICANS_ROW = {
    "ASMDTM": "2024-03-05 09:00",
    "ICEUNABLE": "N",
    "APHASIA": "N",
    "LOC": "ALERT",
    "SEIZURE": "NONE",
    "MOTOR": "NONE",
    "ICPEDEMA": "NONE",
    "OTHERCAUSE": "N",
}
ICANS_EPISODE = {
    "ICANSSTDTM": "2024-03-05 06:00",
    "ICANSGRINV": "1",
    "ICANSTRT": "NONE",
    "ICANSAEID": "AE002",
}
UNAROUSABLE = {"ICEUNABLE": "Y", "LOC": "UNAROUSABLE"}


def icans_row(ice: int | None = 10, **changes: str) -> dict[str, str]:
    """An ICANS assessment row: ICE items for score `ice` (none when unarousable)."""
    row = ICANS_ROW | changes
    return row | (ice_items(ice) if ice is not None else {})


def icans(study: Study, rows: list[dict[str, str]]) -> dict[str, Any]:
    values = derive(study, "F.ICANS", {"IG.ICANS": ICANS_EPISODE, "IG.ICANS.ASM": rows})
    assessments = values["IG.ICANS.ASM"].values()
    return {
        "ice": [row["ICETOT"] for row in assessments],
        "rows": [row["ICANSGRROW"] for row in assessments],
        "episode": values["IG.ICANS"][1]["ICANSGRDER"],
    }


@pytest.mark.parametrize(
    ("ice", "changes", "ice_total", "grade"),
    [
        case(10, {}, "10", "0", id="ice-10-grade-0"),
        case(9, {}, "9", "1", id="ice-9-grade-1"),
        case(7, {}, "7", "1", id="ice-7-grade-1"),
        case(6, {}, "6", "2", id="ice-6-grade-2"),
        case(3, {}, "3", "2", id="ice-3-grade-2"),
        case(2, {}, "2", "3", id="ice-2-grade-3"),
        case(0, {"APHASIA": "Y"}, "0", "3", id="ice-0-awake-global-aphasia-3"),
        case(None, UNAROUSABLE, "0", "4", id="ice-0-unarousable-4"),
        case(10, {"LOC": "AWAKENS SPONTANEOUSLY"}, "10", "1", id="loc-awakens-spontaneously-1"),
        case(10, {"LOC": "AWAKENS TO VOICE"}, "10", "2", id="loc-awakens-to-voice-2"),
        case(10, {"LOC": "AWAKENS TO TACTILE STIMULUS"}, "10", "3", id="loc-tactile-only-3"),
        case(8, {"LOC": "AWAKENS TO VOICE"}, "8", "2", id="ice-8-and-voice-2"),
        case(0, {"LOC": "UNAROUSABLE"}, "0", "4", id="loc-unarousable-with-ice-items-0-4"),
        case(10, {"SEIZURE": "RAPIDLY RESOLVING"}, "10", "3", id="seizure-rapidly-resolving-3"),
        case(10, {"SEIZURE": "PROLONGED OR REPETITIVE"}, "10", "4", id="seizure-prolonged-4"),
        case(10, {"MOTOR": "DEEP FOCAL WEAKNESS"}, "10", "4", id="deep-focal-weakness-4"),
        case(10, {"ICPEDEMA": "FOCAL EDEMA"}, "10", "3", id="focal-edema-3"),
        case(10, {"ICPEDEMA": "DIFFUSE EDEMA"}, "10", "4", id="diffuse-edema-4"),
        case(8, {"ICPEDEMA": "FOCAL EDEMA"}, "8", "3", id="ice-8-with-focal-edema-3"),
        case(5, {"SEIZURE": "PROLONGED OR REPETITIVE"}, "5", "4", id="ice-5-with-status-4"),
        case(
            10,
            {"OTHERCAUSE": "Y", "SEIZURE": "PROLONGED OR REPETITIVE"},
            "10",
            "0",
            id="other-cause-excludes-seizure",
        ),
        case(
            10,
            {"OTHERCAUSE": "Y", "LOC": "AWAKENS TO TACTILE STIMULUS"},
            "10",
            "0",
            id="other-cause-excludes-depressed-consciousness",
        ),
        case(
            10,
            {"OTHERCAUSE": "Y", "MOTOR": "DEEP FOCAL WEAKNESS", "ICPEDEMA": "DIFFUSE EDEMA"},
            "10",
            "0",
            id="other-cause-excludes-motor-and-edema",
        ),
        case(
            10,
            {"OTHERCAUSE": "N", "MOTOR": "DEEP FOCAL WEAKNESS"},
            "10",
            "4",
            id="no-other-cause-motor-counts",
        ),
    ],
)
def test_icans_assessment_grade(
    zm001: Study, ice: int | None, changes: dict[str, str], ice_total: str, grade: str
):
    result = icans(zm001, [icans_row(ice, **changes)])
    assert (result["ice"], result["rows"]) == ([ice_total], [grade])


@pytest.mark.parametrize(
    ("rows", "row_grades", "episode"),
    [
        case([icans_row(10)], ["0"], "0", id="single-normal-row-0"),
        case(
            [icans_row(8), icans_row(2), icans_row(5)],
            ["1", "3", "2"],
            "3",
            id="maximum-over-rows-3",
        ),
        case(
            [icans_row(None, **UNAROUSABLE), icans_row(9)],
            ["4", "1"],
            "4",
            id="unarousable-then-recovering-4",
        ),
    ],
)
def test_icans_episode_grade(
    zm001: Study, rows: list[dict[str, str]], row_grades: list[str], episode: str
):
    result = icans(zm001, rows)
    assert (result["rows"], result["episode"]) == (row_grades, episode)


@pytest.mark.parametrize(
    ("answers", "total"),
    [
        case(ice_items(10), "10", id="all-correct-10"),
        case(ice_items(10) | {"ICENAME": "2"}, "9", id="names-two-objects-9"),
        case(ice_items(10) | {"ICEORYR": "0", "ICEORMO": "0", "ICEWRITE": "0"}, "7", id="ice-7"),
        case(ice_items(0), "0", id="awake-all-wrong-0"),
        case(ice_items(3), "3", id="ice-3"),
    ],
)
def test_ice_score_total(zm001: Study, answers: dict[str, str], total: str):
    values = derive(
        zm001,
        "F.ICE",
        {
            "IG.ICE": {"ICEPERF": "Y", "ICEDTM": "2024-03-05 09:00", "ICEUNABLE": "N"},
            "IG.ICE.ITEMS": answers,
        },
    )
    assert values["IG.ICE.TOTAL"][1]["ICETOT"] == total


def test_ice_score_of_unarousable_subject_is_0(zm001: Study):
    values = derive(
        zm001,
        "F.ICE",
        {"IG.ICE": {"ICEPERF": "Y", "ICEDTM": "2024-03-05 09:00", "ICEUNABLE": "Y"}},
    )
    assert values["IG.ICE.TOTAL"][1]["ICETOT"] == "0"


def test_ice_score_empty_when_not_performed(zm001: Study):
    values = derive(
        zm001,
        "F.ICE",
        {"IG.ICE": {"ICEPERF": "N", "ICENDRSN": "SUBJECT REFUSED"}, "IG.ICE.ITEMS": ice_items(10)},
    )
    assert values["IG.ICE.TOTAL"][1]["ICETOT"] is None


# --- §6.8 Prednisone-equivalent daily dose (CM.CMPREDEQ) -----------------------------------


def gc_row(agent: str, dose: str, frequency: str = "QD", route: str = "ORAL") -> dict[str, str]:
    return {
        "CMTRT": agent.title(),
        "CMINDC": "SLE",
        "CMCAT": "GLUCOCORTICOID",
        "CMGCAGT": agent,
        "CMDOSE": dose,
        "CMDOSU": "mg",
        "CMDOSFRQ": frequency,
        "CMROUTE": route,
    }


@pytest.mark.parametrize(
    ("row", "equivalent"),
    [
        case(gc_row("PREDNISONE", "7.5"), "7.5", id="prednisone-x1"),
        case(gc_row("PREDNISOLONE", "5"), "5", id="prednisolone-x1"),
        case(gc_row("METHYLPREDNISOLONE", "16"), "20", id="methylprednisolone-x1.25"),
        case(gc_row("METHYLPREDNISOLONE", "4"), "5", id="methylprednisolone-4mg-5"),
        case(gc_row("HYDROCORTISONE", "20"), "5", id="hydrocortisone-x0.25"),
        case(gc_row("DEXAMETHASONE", "4"), "26.68", id="dexamethasone-x6.67"),
        case(gc_row("DEXAMETHASONE", "0.75"), "5", id="dexamethasone-0.75mg-5"),
        case(gc_row("BETAMETHASONE", "1"), "8.33", id="betamethasone-x8.33"),
        case(gc_row("BETAMETHASONE", "0.5"), "4.17", id="betamethasone-0.5mg"),
        case(gc_row("DEFLAZACORT", "6"), "4.98", id="deflazacort-x0.83"),
        case(gc_row("PREDNISONE", "5", "BID"), "10", id="prednisone-5mg-bid-10"),
        case(gc_row("HYDROCORTISONE", "10", "TID"), "7.5", id="hydrocortisone-10mg-tid-7.5"),
        case(gc_row("DEXAMETHASONE", "4", route="INTRAVENOUS"), "26.68", id="iv-dexamethasone"),
        case(
            {"CMTRT": "Hydroxychloroquine", "CMCAT": "ANTIMALARIAL", "CMDOSE": "200"},
            None,
            id="not-a-glucocorticoid",
        ),
    ],
)
def test_prednisone_equivalent_daily_dose(
    zm001: Study, row: dict[str, str], equivalent: str | None
):
    assert derive(zm001, "F.CM", {"IG.CM": [row]})["IG.CM"][1]["CMPREDEQ"] == equivalent


def test_prednisone_equivalent_per_medication_row(zm001: Study):
    rows = [gc_row("PREDNISONE", "10"), gc_row("METHYLPREDNISOLONE", "8", "BID")]
    values = derive(zm001, "F.CM", {"IG.CM": rows})["IG.CM"]
    assert [row["CMPREDEQ"] for row in values.values()] == ["10", "20"]


# --- §5.18 / §1.2 Target dose per dose level (EX.EXTRGDOS) ----------------------------------


@pytest.mark.parametrize(
    ("level", "target"),
    [
        case("DL1", "25", id="DL1-25e6"),
        case("DL2", "50", id="DL2-50e6"),
        case("DL3", "100", id="DL3-100e6"),
        case("DL4", "200", id="DL4-200e6"),
        case(None, None, id="no-level"),
    ],
)
def test_target_dose_per_dose_level(zm001: Study, level: str | None, target: str | None):
    assert derive(zm001, "F.EX", {"IG.EX": {"DOSELVL": level}})["IG.EX"][1]["EXTRGDOS"] == target


@pytest.mark.parametrize(
    ("level", "dose", "percent", "flagged"),
    [
        case("DL2", "50", "100", False, id="on-target"),
        case("DL2", "40", "80", False, id="minus-20-percent-within"),
        case("DL2", "39.9", "79.8", True, id="below-80-percent-flagged"),
        case("DL2", "60", "120", False, id="plus-20-percent-within"),
        case("DL2", "60.5", "121", True, id="above-120-percent-flagged"),
        case("DL4", "150", "75", True, id="DL4-underdosed-flagged"),
    ],
)
def test_delivered_dose_within_20_percent_of_target(
    zm001: Study, level: str, dose: str, percent: str, flagged: bool
):
    evaluation = evaluate(zm001, "F.EX", {"IG.EX": {"DOSELVL": level, "EXDOSE": dose}})
    assert evaluation.values["IG.EX"][1]["EXPCTTRG"] == percent
    assert (("IG.EX", 1, "EXPCTTRG") in evaluation.flags) is flagged


# --- §2.3 / §5.22 DLT window end (DLT.DLTWEND) ----------------------------------------------


@pytest.mark.parametrize(
    ("infusion", "window_end"),
    [
        case("2024-03-01T10:00:00", "2024-03-29", id="D0-plus-28"),
        case("2024-03-01T23:59:00", "2024-03-29", id="late-evening-infusion"),
        case("2024-02-10T09:00:00", "2024-03-09", id="across-leap-february"),
        case("2023-02-10T09:00:00", "2023-03-10", id="across-non-leap-february"),
        case("2024-12-20T14:30:00", "2025-01-17", id="across-year-end"),
        case(None, None, id="not-infused"),
    ],
)
def test_dlt_window_end(zm001: Study, infusion: str | None, window_end: str | None):
    values = derive(zm001, "F.DLT", {"IG.DLT": {}}, {"EX": {"EXSTDTM": infusion}})
    assert values["IG.DLT"][1]["DLTWEND"] == window_end


# --- §5.23 Death within the DLT window (DD.DTHDLTWIN) -----------------------------------------


@pytest.mark.parametrize(
    ("death", "infusion", "within"),
    [
        case("2024-03-01", "2024-03-01T10:00:00", "Y", id="D0"),
        case("2024-03-15", "2024-03-01T10:00:00", "Y", id="D14"),
        case("2024-03-29", "2024-03-01T10:00:00", "Y", id="D28-last-day"),
        case("2024-03-30", "2024-03-01T10:00:00", "N", id="D29-outside"),
        case("2024-09-01", "2024-03-01T10:00:00", "N", id="six-months-later"),
        case("2024-02-28", "2024-03-01T10:00:00", "N", id="before-infusion"),
        case("2024-03-28", "2024-02-29T08:00:00", "Y", id="D28-from-leap-day"),
        case("2024-03-29", "2024-02-29T08:00:00", "N", id="D29-from-leap-day"),
        case("2024-03-15", None, None, id="never-infused"),
    ],
)
def test_death_within_dlt_window(
    zm001: Study, death: str, infusion: str | None, within: str | None
):
    values = derive(zm001, "F.DD", {"IG.DD": {"DTHDAT": death}}, {"EX": {"EXSTDTM": infusion}})
    assert values["IG.DD"][1]["DTHDLTWIN"] == within


# --- §5.3 Derived eligibility (IE.ELIGDER) --------------------------------------------------


def eligibility(study: Study, answers: dict[str, str | None]) -> str | None:
    """ELIGDER with the criteria answered as in `answers` (by IETESTCD); others unanswered."""
    group = next(g for g in study.form("F.IE").item_groups if g.oid == "IG.IE.IECRIT")
    rows = [{"IEORRES": answers.get(preset["IETESTCD"])} for preset in group.rows]
    assert set(answers) <= {preset["IETESTCD"] for preset in group.rows}
    return derive(study, "F.IE", {"IG.IE.IECRIT": rows})["IG.IE"][1]["ELIGDER"]


INCLUSION = [f"IN{n:02d}" for n in range(1, 12)]
EXCLUSION = [f"EX{n:02d}" for n in range(1, 14)]
ELIGIBLE = dict.fromkeys(INCLUSION, "Y") | dict.fromkeys(EXCLUSION, "N")


@pytest.mark.parametrize(
    ("answers", "eligible"),
    [
        case(ELIGIBLE, "Y", id="all-inclusion-met-no-exclusion-Y"),
        case(ELIGIBLE | {"IN05": "N"}, "N", id="age-inclusion-not-met-N"),
        case(ELIGIBLE | {"IN01": "N"}, "N", id="first-inclusion-not-met-N"),
        case(ELIGIBLE | {"IN11": "N"}, "N", id="last-inclusion-not-met-N"),
        case(ELIGIBLE | {"EX09": "Y"}, "N", id="pregnancy-exclusion-present-N"),
        case(ELIGIBLE | {"EX13": "Y"}, "N", id="last-exclusion-present-N"),
        case(dict.fromkeys(INCLUSION, "N") | dict.fromkeys(EXCLUSION, "Y"), "N", id="all-fail"),
        case(ELIGIBLE | {"EX04": None}, None, id="one-exclusion-unanswered-no-value"),
        case(ELIGIBLE | {"IN07": None}, None, id="one-inclusion-unanswered-no-value"),
        case({}, None, id="nothing-answered-no-value"),
        case({"IN03": "N"}, "N", id="failed-criterion-decides-before-complete"),
    ],
)
def test_derived_eligibility(zm001: Study, answers: dict[str, str | None], eligible: str | None):
    assert eligibility(zm001, answers) == eligible


# --- §5.4 SLE history: disease duration, therapy duration, refractory flag -------------------


@pytest.mark.parametrize(
    ("diagnosed", "consent", "years"),
    [
        case("2014-06-15", "2024-06-15", "10", id="ten-years"),
        case("2021-12-15", "2024-06-15", "2.5", id="two-and-a-half-years"),
        case("2014-06-15", None, None, id="no-consent-date"),
    ],
)
def test_sle_disease_duration_at_consent(
    zm001: Study, diagnosed: str, consent: str | None, years: str | None
):
    values = derive(
        zm001, "F.SLEHX", {"IG.SLEHX": {"SLEDIAGDT": diagnosed}}, {"IC": {"ICDAT": consent}}
    )
    assert values["IG.SLEHX"][1]["SLEDUR"] == years


def prior_therapy(agent: str, start: str = "2023-01-01", stop: str | None = "2023-07-01"):
    return {"PTRT": agent, "PTSTDAT": start, "PTENDAT": stop, "PTRSN": "INADEQUATE RESPONSE"}


@pytest.mark.parametrize(
    ("start", "stop", "months"),
    [
        case("2023-01-01", "2023-07-01", "5.9", id="181-days"),
        case("2022-01-01", "2023-01-01", "12", id="one-year"),
        case("2023-01-01", "2023-01-01", "0", id="same-day"),
    ],
)
def test_prior_therapy_duration_in_months(zm001: Study, start: str, stop: str, months: str):
    values = derive(
        zm001, "F.SLEHX", {"IG.SLEHX.PRIORTX": [prior_therapy("RITUXIMAB", start, stop)]}
    )
    assert values["IG.SLEHX.PRIORTX"][1]["PTDUR"] == months


@pytest.mark.parametrize(
    ("agents", "refractory"),
    [
        case(["PREDNISONE", "MYCOPHENOLATE", "BELIMUMAB"], "Y", id="gc-is-biologic-Y"),
        case(["METHYLPREDNISOLONE", "CYCLOPHOSPHAMIDE", "RITUXIMAB"], "Y", id="pulse-cyc-rtx-Y"),
        case(["PREDNISONE", "MYCOPHENOLATE"], "N", id="no-biologic-N"),
        case(["PREDNISONE", "BELIMUMAB"], "N", id="no-immunosuppressant-N"),
        case(["TACROLIMUS", "TELITACICEPT"], "N", id="no-glucocorticoid-N"),
        case(["PREDNISONE", "HYDROXYCHLOROQUINE", "BELIMUMAB"], "N", id="antimalarial-not-IS-N"),
    ],
)
def test_refractory_flag(zm001: Study, agents: list[str], refractory: str):
    rows = [prior_therapy(agent) for agent in agents]
    values = derive(zm001, "F.SLEHX", {"IG.SLEHX.PRIORTX": rows})
    assert values["IG.SLEHX"][1]["REFRACDER"] == refractory
