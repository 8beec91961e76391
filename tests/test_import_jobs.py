"""Import jobs (app.import_jobs): the import runs subject by subject in short transactions,
so other users work while it runs; an interrupted job shows as failed; the command line shows
progress per subject."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from lxml import etree
from sqlalchemy import Engine, func
from sqlmodel import Session, select

from app import audit, import_jobs, jobs
from app.access import load_access
from app.models import AuditRecord, ImportJob, JobState, Subject, UserAccount, pk, utcnow
from app.study.loader import Study
from tests import factories
from tests.test_odm_import import ODM, cli, demo_export, one_subject

__all__ = ["demo_export"]  # the fixture, shared with test_odm_import


def queue(engine: Engine, study: Study, path: Path, username: str = "datamanager") -> int:
    with Session(engine) as session, path.open("rb") as upload:
        user = session.exec(select(UserAccount).where(UserAccount.username == username)).one()
        access = load_access(session, user, study.id)
        job = import_jobs.create_job(
            session, study, access, path.name, upload, valid_subjects_only=False,
            actor=audit.Actor(user, "test"),
        )  # fmt: skip
        session.commit()
        return pk(job)


def test_other_users_save_between_the_subjects_of_a_running_import(
    demo_engine: Engine, zm001: Study, demo_export: Path
) -> None:
    """Between subjects the import holds no transaction: the progress is committed and
    another user's save (from another connection) goes through while the job runs. The
    subject that user registers takes the next screening number; if the file holds that
    number too, the store pass reports it as not stored, and says exactly what it stored."""
    job_id = queue(demo_engine, zm001, demo_export)
    keys = [
        str(s.get("SubjectKey")) for s in etree.parse(str(demo_export)).iter(f"{ODM}SubjectData")
    ]
    seen: list[tuple[str, int, int]] = []
    registered: list[str] = []

    def between(phase: str, done: int, total: int) -> None:
        with Session(demo_engine) as other:
            job = other.get(ImportJob, job_id)
            assert job is not None
            seen.append((job.phase, job.progress_done, job.progress_total))
            if phase == "storing" and done == 1:
                registered.append(factories.register(other, zm001).subject_key)

    import_jobs.run_job(demo_engine, zm001, job_id, progress=between)

    n = len(keys)
    assert seen[:2] == [("checking", 1, n), ("checking", 2, n)]
    assert seen[n : n + 2] == [("storing", 1, n), ("storing", 2, n)]
    with Session(demo_engine) as session:
        job = session.get(ImportJob, job_id)
        assert job is not None and job.state == JobState.DONE
        report = import_jobs.ImportJobView(job, "", False).report
        assert report is not None and report.stored
        stored = session.exec(select(func.count()).select_from(Subject)).one()
        actions = session.exec(
            select(AuditRecord.action).where(AuditRecord.action.startswith("import"))  # type: ignore[attr-defined]
        ).all()
    clash = [key for key in registered if key in keys]
    assert report.not_stored == clash
    assert sorted(report.stored_subjects + report.not_stored) == sorted(keys)
    assert report.subjects == len(report.stored_subjects) == n - len(clash)
    assert stored == report.subjects + 1
    assert sorted(actions) == ["import", "import_requested"]


def test_an_import_job_whose_heartbeat_stopped_shows_as_failed(
    demo_engine: Engine, zm001: Study, demo_export: Path
) -> None:
    job_id = queue(demo_engine, zm001, demo_export)
    with Session(demo_engine) as session:
        job = session.get(ImportJob, job_id)
        assert job is not None
        job.state, job.heartbeat_at = JobState.RUNNING, utcnow() - jobs.STALE_AFTER * 2
        job.requested_at = utcnow() - timedelta(minutes=5)
        session.commit()
        access = load_access(session, factories.user(session, "datamanager"), zm001.id)
        view = import_jobs.get_job(session, access, job_id)
        assert (view.state, view.message) == (JobState.FAILED, import_jobs.INTERRUPTED)
        assert session.get(ImportJob, job_id).state == JobState.RUNNING  # type: ignore[union-attr]  # reading wrote nothing
        assert import_jobs.fail_interrupted(session) == 1
        assert session.get(ImportJob, job_id).state == JobState.FAILED  # type: ignore[union-attr]


def test_a_data_manager_lists_the_import_jobs_and_a_monitor_may_not(
    demo_engine: Engine, zm001: Study, demo_export: Path
) -> None:
    job_id = queue(demo_engine, zm001, demo_export)
    with Session(demo_engine) as session:
        manager = load_access(session, factories.user(session, "datamanager"), zm001.id)
        assert [view.job.id for view in import_jobs.list_jobs(session, manager)] == [job_id]
        monitor = load_access(session, factories.user(session, "monitor"), zm001.id)
        with pytest.raises(Exception, match="import"):
            import_jobs.list_jobs(session, monitor)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_command_line_shows_progress_per_subject(
    demo_engine: Engine, database_url: str, demo_export: Path, tmp_path: Path
) -> None:
    path = one_subject(demo_export, tmp_path / "one.xml", {})
    done = cli(str(path), "--as", "datamanager", database_url=database_url)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("one.xml: imported 1 subjects")
    assert "checking" in done.stderr and "storing" in done.stderr and "1/1" in done.stderr
