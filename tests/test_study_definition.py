"""The ZM001 definition is complete, and broken definitions are reported with their places."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from app.config import Settings, StudyFolders
from app.main import create_app
from app.study.loader import Study, study_problems
from app.study.problems import StudyDefinitionError
from tests.conftest import FORMS

SPEC_VISITS = [
    "SE.SCR",
    "SE.APHPRE",
    "SE.APH",
    "SE.BL",
    "SE.LD",
    "SE.D0",
    "SE.D1",
    "SE.D4",
    "SE.D7",
    "SE.D10",
    "SE.D14",
    "SE.D21",
    "SE.D28",
    "SE.M2",
    "SE.M3",
    "SE.M6",
    "SE.M9",
    "SE.M12",
    "SE.M18",
    "SE.M24",
    "SE.LTFU",
    "SE.ET",
    "SE.UNS",
]  # spec §4.1
SPEC_FORMS = {
    # spec §5 forms and the §4.3 rows that are separate pages
    "F.IC", "F.DM", "F.IE", "F.SLEHX", "F.MH", "F.CM", "F.PR", "F.TX", "F.VS", "F.HTWT", "F.PE",
    "F.EACR", "F.SLEDAI", "F.PGA", "F.BILAG", "F.LBHEM", "F.LBCHEM", "F.LBCOAG", "F.LBURIN",
    "F.LBU24", "F.LBIMM", "F.LBAPL", "F.LBIG", "F.LBLYMS", "F.LBCART", "F.LBINFL", "F.LBCYTO",
    "F.LBINF", "F.LBVIR", "F.LBRCL", "F.PREG", "F.APH", "F.PROD", "F.LD", "F.EX", "F.AE",
    "F.CRS", "F.ICANS", "F.ICE", "F.DLT", "F.DD", "F.DS", "F.EG", "F.ECHO", "F.CHEST",
}  # fmt: skip


def test_zm001_has_every_visit_and_form_of_the_spec(zm001: Study) -> None:
    assert [visit.oid for visit in zm001.schedule.visits] == SPEC_VISITS
    assert SPEC_FORMS <= set(zm001.forms)
    scheduled = {entry.form for visit in zm001.schedule.visits for entry in visit.forms}
    assert scheduled | set(zm001.log_form_oids()) == set(zm001.forms)
    assert [(level.dose, level.unit) for level in zm001.info.dose_levels] == [
        (dose, "10^6 CAR-T cells") for dose in (25, 50, 100, 200)
    ]
    assert {"AE", "CM", "MH", "CRS", "ICANS", "DD"} <= {
        zm001.form(oid).name for oid in zm001.log_form_oids()
    } | {"MH"}


def test_zm001_passes_the_study_check() -> None:
    assert study_problems(FORMS) == []


@pytest.fixture
def broken(tmp_path: Path) -> Path:
    """A copy of ZM001 with a broken expression, an unknown code list and a duplicate OID."""
    copy = tmp_path / "forms"
    shutil.copytree(FORMS, copy)
    dm = copy / "ecrf" / "DM.yaml"
    text = dm.read_text()
    text = text.replace(
        "derivation: years_between(BRTHDAT, IC.ICDAT)",
        "derivation: years_between(BRTHDAT, IC.ICDAT",
    )
    text = text.replace("codelist: CL.RACE", "codelist: CL.RACES")
    text = text.replace("oid: IT.DM.SEX", "oid: IT.DM.BRTHDAT")
    dm.write_text(text)
    return copy


def test_a_broken_definition_reports_all_three_problems_with_their_places(broken: Path) -> None:
    messages = [str(problem) for problem in study_problems(broken)]
    lines = {
        n + 1: line for n, line in enumerate((broken / "ecrf" / "DM.yaml").read_text().splitlines())
    }

    def line_of(fragment: str) -> int:
        return next(n for n, line in lines.items() if fragment in line)

    assert any(
        m.startswith(f"forms/ecrf/DM.yaml:{line_of('years_between(BRTHDAT')}:")
        and "derivation" in m
        and "does not compile" in m
        for m in messages
    ), messages
    assert any(
        m.startswith(f"forms/ecrf/DM.yaml:{line_of('CL.RACES')}:")
        and "unknown codelist CL.RACES" in m
        for m in messages
    ), messages
    duplicate_line = [n for n, line in lines.items() if "oid: IT.DM.BRTHDAT" in line][1]
    assert any(
        m.startswith(f"forms/ecrf/DM.yaml:{duplicate_line}:") and "duplicate OID IT.DM.BRTHDAT" in m
        for m in messages
    ), messages
    assert len(messages) == 3, messages


def test_study_check_command_exits_non_zero_on_a_broken_copy(broken: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "app", "study", "check", str(broken)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert "3 problem(s) in the study definition" in result.stderr
    assert "unknown codelist CL.RACES" in result.stderr
    ok = subprocess.run(
        [sys.executable, "-m", "app", "study", "check", str(FORMS)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert ok.returncode == 0, ok.stderr
    assert "ZM001: OK" in ok.stdout


def test_the_server_refuses_to_start_on_a_broken_definition(broken: Path, tmp_path: Path) -> None:
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'x.db'}", studies=(StudyFolders(forms=broken),)
    )
    with pytest.raises(StudyDefinitionError) as error:
        create_app(settings)
    assert "unknown codelist CL.RACES" in str(error.value)


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("window: {from: -28, to: -1}", "window: {from: -1, to: -28}", "inverted window"),
        (
            "      - F.IC\n",
            "      - F.NOPE\n",
            "form F.NOPE is scheduled at SE.SCR but not defined",
        ),
        ("show_if: SEX == 'F'\n", "show_if: SEXX == 'F'\n", "unknown item SEXX"),
        ("show_if: SEX == 'F'\n", "show_if: SEX + 1.5\n", "fails on sample values"),
    ],
)
def test_each_kind_of_problem_is_named(tmp_path: Path, old: str, new: str, message: str) -> None:
    copy = tmp_path / "forms"
    shutil.copytree(FORMS, copy)
    for path in [copy / "schedule.yaml", copy / "ecrf" / "DM.yaml"]:
        path.write_text(path.read_text().replace(old, new, 1))
    messages = [str(p) for p in study_problems(copy)]
    assert any(message in m for m in messages), messages


def copy_with_dm_edits(tmp_path: Path, edits: list[tuple[str, str]]) -> Path:
    """A copy of ZM001 whose DM.yaml has each (old, new) text replaced once."""
    copy = tmp_path / "forms"
    shutil.copytree(FORMS, copy)
    dm = copy / "ecrf" / "DM.yaml"
    text = dm.read_text()
    for old, new in edits:
        assert old in text
        text = text.replace(old, new, 1)
    dm.write_text(text)
    return copy


def dm_line(copy: Path, line: str) -> int:
    return (copy / "ecrf" / "DM.yaml").read_text().splitlines().index(line) + 1


def test_a_mistyped_key_is_one_line_and_a_second_error_in_its_file_comes_with_it(
    tmp_path: Path,
) -> None:
    copy = copy_with_dm_edits(
        tmp_path,
        [("        label: Sex\n", "        lable: Sex\n"), ("CL.RACE\n", "CL.RACES\n")],
    )
    assert [str(problem) for problem in study_problems(copy)] == [
        f"forms/ecrf/DM.yaml:{dm_line(copy, '        lable: Sex')}: item_groups[0].items[2].lable: "
        "unknown key 'lable' (did you mean 'label'?)",
        f"forms/ecrf/DM.yaml:{dm_line(copy, '        codelist: CL.RACES')}: "
        "item_groups[0].items[5].codelist: unknown codelist CL.RACES",
    ]


def test_every_problem_of_every_file_is_reported_at_once_each_once(tmp_path: Path) -> None:
    """An item that cannot be read is left out of the whole-study checks, which still run on
    the rest (of its file and of the others), without repeating what follows from it."""
    copy = copy_with_dm_edits(
        tmp_path,
        [
            (
                "type: choice\n        codelist: CL.SEX\n",
                "type: choise\n        codelist: CL.SEX\n",
            ),
            ("codelist: CL.ETHNIC\n        required:", "codelist: CL.ETHNIC\n        requird:"),
            ("codelist: CL.RACE\n", "codelist: CL.RACES\n"),
        ],
    )
    schedule = copy / "schedule.yaml"
    schedule.write_text(schedule.read_text().replace("      - F.IC\n", "      - F.NOPE\n", 1))
    problems = study_problems(copy)
    messages = [f"{p.file}: {p.where}: {p.message}" for p in problems]
    assert len(messages) == 4, messages
    assert messages[0].startswith("forms/ecrf/DM.yaml: item_groups[0].items[2].type: Input ")
    assert messages[1:] == [
        "forms/ecrf/DM.yaml: item_groups[0].items[3].requird: "
        "unknown key 'requird' (did you mean 'required'?)",
        "forms/schedule.yaml: visits[0].forms[0]: "
        "form F.NOPE is scheduled at SE.SCR but not defined in ecrf/",
        "forms/ecrf/DM.yaml: item_groups[0].items[5].codelist: unknown codelist CL.RACES",
    ]
    assert problems[-1].line == dm_line(copy, "        codelist: CL.RACES")
    # SEX, left out, is read by expressions in DM and other forms: nothing follows from it
    assert not any("SEX" in message for message in messages[1:])


def test_a_file_that_is_not_yaml_is_one_problem_and_nothing_follows_from_it(
    tmp_path: Path,
) -> None:
    copy = copy_with_dm_edits(tmp_path, [("        label: Sex\n", "        label: Sex: [\n")])
    problems = study_problems(copy)
    assert [(p.file, p.message.split(":")[0]) for p in problems] == [
        ("forms/ecrf/DM.yaml", "is not valid YAML")
    ], problems
