"""The study's signature settings (`signatures.yaml`): ZM001 signs the casebook and its
eligibility, DLT assessment and end-of-study forms; `study check` names an unknown or
repeated form with its file and line; a study without the file loads and signs nothing."""

from __future__ import annotations

import shutil
from pathlib import Path

from app.study.loader import load_study, study_problems
from tests.conftest import FORMS, REPO


def test_zm001_signs_its_casebook_and_three_forms() -> None:
    settings = load_study(FORMS).signatures
    assert settings is not None and settings.refuse_with_open_queries
    assert [signed.form for signed in settings.forms] == ["F.IE", "F.DLT", "F.DS"]
    assert settings.meaning_of(None) == (
        "I approve the data in this casebook as complete and accurate."
    )
    assert settings.meaning_of("F.IC") is None


def test_study_check_names_an_unknown_or_repeated_form(tmp_path: Path) -> None:
    copy = tmp_path / "forms"
    shutil.copytree(FORMS, copy)
    path = copy / "signatures.yaml"
    text = (
        path.read_text().replace("form: F.DLT", "form: F.DLTX").replace("form: F.DS", "form: F.IE")
    )
    path.write_text(text)
    lines = text.splitlines()
    dltx = lines.index("  - form: F.DLTX") + 1
    again = len(lines) - 1
    assert [str(problem) for problem in study_problems(copy)] == [
        f"forms/signatures.yaml:{dltx}: forms[1].form: unknown form F.DLTX",
        f"forms/signatures.yaml:{again}: forms[2].form: form F.IE is named twice",
    ]


def test_a_study_without_signature_settings_loads_and_signs_nothing() -> None:
    study = load_study(REPO / "tests" / "studies" / "HT201" / "forms")
    assert study.signatures is None and "signatures" not in study.content
