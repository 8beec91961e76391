"""The write path is the only way into the clinical tables: found by walking the code, and by
instrumenting every database statement of the test run (`tests.write_path_guard`)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from sqlalchemy import Engine, insert
from sqlmodel import Session, select

from app.models import ItemData, Subject
from app.study.loader import Study
from tests import factories
from tests.conftest import REPO
from tests.write_path_guard import OutsideTheWritePath

CLINICAL_MODELS = {
    "Subject",
    "StudyEventData",
    "FormData",
    "ItemGroupData",
    "ItemData",
    "StatusAlert",
}
WRITES = {"insert", "update", "delete"}
PERSIST = REPO / "app" / "crf" / "persist.py"


def _writes_to_clinical_tables(path: Path) -> list[str]:
    """Lines of `path` that build a clinical row or a DML statement on a clinical table."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if not isinstance(node, ast.Call):
            continue
        name = node.func.id if isinstance(node.func, ast.Name) else None
        if name in CLINICAL_MODELS:
            found.append(f"{path.relative_to(REPO)}: {name}(...)")
        elif name in WRITES and node.args:
            target = ast.unparse(node.args[0])
            if any(model in target for model in CLINICAL_MODELS):
                found.append(f"{path.relative_to(REPO)}: {name}({target})")
        elif isinstance(node.func, ast.Attribute) and node.func.attr == "delete":
            found.append(f"{path.relative_to(REPO)}: {ast.unparse(node.func)}(...)")
    return found


def test_only_the_persist_step_builds_clinical_rows_or_statements() -> None:
    outside = [
        line
        for path in sorted((REPO / "app").rglob("*.py"))
        if path != PERSIST
        for line in _writes_to_clinical_tables(path)
    ]
    # Administration deletes role assignments, not clinical data.
    assert outside == ["app/admin.py: session.delete(...)"]
    assert _writes_to_clinical_tables(PERSIST)  # the walk sees what persist does


@pytest.mark.parametrize("how", ["orm", "core"])
def test_a_write_outside_the_write_path_is_caught(
    demo_engine: Engine, zm001: Study, how: str
) -> None:
    with Session(demo_engine) as session:
        subject = factories.register(session, zm001)  # through the write path: allowed
        with pytest.raises(OutsideTheWritePath, match=r"outside app\.crf\.persist"):
            if how == "orm":
                subject.status = "enrolled"
                session.add(subject)
                session.flush()
            else:
                session.execute(insert(ItemData).values(item_group_data_id=1, item_oid="X"))
        session.rollback()
        assert session.exec(select(Subject.status)).one() == "screening"
