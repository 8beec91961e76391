"""`trialdesk study check` compiles every edit check and reports, with file and line, what
would otherwise fail at run time or never fire."""

from __future__ import annotations

import shutil
from pathlib import Path

from app.study.loader import study_problems
from tests.conftest import FORMS

BAD_CHECKS = """\
checks:
  - {id: EC900, form: F.AE, items: [AEENDATX], condition: "true", severity: soft, message: x}
  - {id: EC901, form: F.AE, items: [AEENDAT], condition: AEENDAT >= IC.ICDATE, severity: soft, message: x}
  - {id: EC902, form: F.AE, items: [AEENDAT], condition: AEENDAT + 1 > 2, severity: soft, message: x}
  - {id: EC903, form: F.AE, items: [AEENDAT], condition: IC.ICDAT != null, severity: hard, message: x}
  - {id: EC904, form: F.AE, items: [AEENDAT], condition: NOPE > 1, severity: soft, message: x}
  - {id: EC905, form: F.AE, items: [AEENDAT], condition: AEENDAT, severity: soft, message: x}
  - {id: EC906, form: F.NONE, items: [X], condition: "true", severity: soft, message: x}
  - {id: EC907, form: F.AE, items: [AEENDAT], condition: visits.SCR.AE.AETERM != '', severity: soft, message: x}
  - {id: EC045, form: F.AE, items: [AEENDAT], condition: "true", severity: soft, message: x}
"""


def test_the_study_check_reports_each_wrong_check_with_its_line(tmp_path: Path) -> None:
    folder = tmp_path / "forms"
    shutil.copytree(FORMS, folder)
    (folder / "checks" / "BAD.yaml").write_text(BAD_CHECKS)
    problems = study_problems(folder)
    assert {p.file for p in problems} == {"forms/checks/BAD.yaml"}
    found = {(p.line, p.message.split(":")[0]): p.message for p in problems}
    assert found[(2, "EC900")] == "EC900: form AE has no item AEENDATX"
    assert "it reads 'ICDATE', which does not exist" in found[(3, "EC901")]
    assert "Unsupported operation" in found[(4, "EC902")]
    assert (
        "a save of AE can never satisfy it" in found[(5, "EC903 is hard but reads no item of AE")]
    )
    assert found[(6, "EC904")] == "EC904: unknown name NOPE in condition 'NOPE > 1'"
    assert "must give true or false" in found[(7, "EC905")]
    assert found[(8, "EC906")] == "EC906: unknown form F.NONE"
    assert "'AE', which does not exist there" in found[(9, "EC907")]  # AE is at no visit
    assert found[(10, "duplicate check id EC045")]
    assert len(found) == 9


def test_the_shipped_checks_pass_the_study_check() -> None:
    assert study_problems(FORMS) == []


def test_a_batch_only_check_must_be_soft(tmp_path: Path) -> None:
    folder = tmp_path / "forms"
    shutil.copytree(FORMS, folder)
    (folder / "checks" / "BATCH.yaml").write_text(
        "checks:\n  - {id: EC908, form: F.AE, items: [AEENDAT], condition: 'true',\n"
        "     severity: hard, batch_only: true, message: x}\n"
    )
    [problem] = study_problems(folder)
    assert problem.file == "forms/checks/BATCH.yaml"
    assert "a batch-only check cannot be hard: it never runs on a save" in problem.message
