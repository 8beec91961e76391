"""The SDV plan as study data (forms/sdv.yaml): what it asks of each subject's forms, a
sample that any process decides alike, `study check` naming unknown forms and items with
file and line, and a study without a plan (HT201)."""

from __future__ import annotations

import shutil
from pathlib import Path

from app.study.loader import load_study, study_problems
from app.study.sdv_plan import in_sample, requirement
from tests.conftest import FORMS, REPO

HT201 = REPO / "tests" / "studies" / "HT201" / "forms"


def test_zm001_plan_asks_for_safety_forms_first_subjects_and_a_sample() -> None:
    plan = load_study(FORMS).sdv
    assert plan is not None
    every = requirement(plan, "ZM001", "01-007", 7, "F.DLT")
    assert every is not None and every.items is None and every.why == "verified for every subject"
    first = requirement(plan, "ZM001", "02-001", 1, "F.LBHEM")
    assert first is not None and first.why == "the site's first subject"
    dm = requirement(plan, "ZM001", "02-001", 1, "F.DM")
    assert dm is not None and dm.items == ("BRTHDAT", "SEX")
    sampled = [key for key in (f"01-{n:03d}" for n in range(2, 200)) if in_sample("ZM001", key, 25)]
    assert 30 < len(sampled) < 70  # about a quarter
    assert requirement(plan, "ZM001", sampled[0], 2, "F.LBHEM") is not None
    outside = next(f"01-{n:03d}" for n in range(2, 200) if f"01-{n:03d}" not in sampled)
    assert requirement(plan, "ZM001", outside, 2, "F.LBHEM") is None
    # the same answer whatever process asks, and another study samples other subjects
    assert in_sample("ZM001", sampled[0], 25) and not in_sample("ZM001", sampled[0], 0)
    assert [in_sample("HT201", k, 25) for k in sampled] != [True] * len(sampled)


def test_a_study_without_a_plan_loads_and_asks_for_nothing() -> None:
    study = load_study(HT201)
    assert study.sdv is None
    assert requirement(study.sdv, "HT201", "01-001", 1, "F.DM") is None


def test_study_check_names_unknown_forms_and_items_with_file_and_line(tmp_path: Path) -> None:
    copy = tmp_path / "forms"
    shutil.copytree(FORMS, copy)
    (copy / "sdv.yaml").write_text(
        "every_subject:\n  - F.IE\n  - F.NOPE\nfirst_subjects_per_site: 1\n"
        "items:\n  F.DM: [BRTHDAT, NOSUCH]\n  F.GONE: [X]\n"
    )
    problems = [str(p) for p in study_problems(copy)]
    assert problems == [
        "forms/sdv.yaml:3: every_subject[1]: unknown form F.NOPE",
        "forms/sdv.yaml:6: items.F.DM[1]: form DM has no item NOSUCH",
        "forms/sdv.yaml:7: items.F.GONE: unknown form F.GONE",
    ]
    (copy / "sdv.yaml").write_text("every_subject: [F.IE]\nsample_percent: 120\n")
    assert [str(p) for p in study_problems(copy)] == [
        "forms/sdv.yaml:2: sample_percent: Input should be less than or equal to 100"
    ]
