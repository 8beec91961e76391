"""The data-cleaning state the demo leaves: what a monitor and a data manager would find in a
study under way. The edit checks have opened system queries while the demo entered its data;
here a monitor raises a few queries by hand, the site answers some, the data manager closes
one, the monitor verifies forms against the source (and the site's later correction of one
drops its verification), one subject's casebook is frozen, the investigator has signed a casebook, and a signed
end-of-study form was corrected after its signature (which it broke). Every step goes through the write path as the
person who would take it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date, datetime, timedelta

from sqlmodel import Session, col, select

from app import audit
from app.access import load_access
from app.crf import reads, write
from app.crf.changes import (
    Change,
    DataLockSet,
    FormEdit,
    FormRef,
    FormValues,
    QueryAction,
    QueryChange,
    QueryOpen,
    QueryTarget,
    Sign,
    VerifyForm,
)
from app.db import unit_of_work
from app.models import FormStatus, Query, QueryState, Site, Subject, UserAccount, pk
from app.review.sdv_reads import sdv_by_site
from app.review.signatures import waiting_queries
from app.study.loader import LOG_EVENT_OID, Study

MANUAL_QUERIES = (
    (QueryTarget("SE.SCR", 1, "F.IC", 1, "IG.IC", 1, "IT.IC.ICDAT"),
     "Please confirm the consent date against the signed ICF in the site file."),
    (QueryTarget("SE.SCR", 1, "F.VS", 1),
     "The screening vital signs have no time point for the second measurement; please check."),
    (QueryTarget("SE.SCR", 1, "F.DM", 1, "IG.DM", 1, "IT.DM.BRTHDAT"),
     "The date of birth differs from the one on the screening log; please confirm."),
)  # fmt: skip


def leave_cleaning_state(session: Session, study: Study, now: datetime, password: str) -> None:
    """Raise, answer and close queries, freeze a casebook and sign (the investigator's
    `password`) in the demo subjects."""
    authors = {
        name: _author(session, study, name)
        for name in ("monitor", "coordinator", "datamanager", "investigator")
    }
    subjects = session.exec(
        select(Subject).join(Site).where(Subject.study_id == study.id, Site.number == "01")
        .order_by(col(Subject.subject_key))
    ).all()  # fmt: skip
    if len(subjects) < 4:
        return

    def apply(change: Change, by: str) -> write.Outcome:
        with unit_of_work(session):
            return write.apply(session, study, change, by=authors[by], now=now)

    opened = [
        apply(QueryOpen(pk(subject), target, text), "monitor").plan.queries[0].query
        for subject, (target, text) in zip(subjects, MANUAL_QUERIES, strict=False)
    ]
    first, second = opened[0], opened[1]
    apply(QueryChange(first.subject_id, pk(first), 1, QueryAction.ANSWER,
                      "Checked: the ICF is dated as entered."), "coordinator")  # fmt: skip
    apply(QueryChange(first.subject_id, pk(first), 2, QueryAction.CLOSE,
                      "Confirmed at source data verification."), "datamanager")  # fmt: skip
    apply(QueryChange(second.subject_id, pk(second), 1, QueryAction.ANSWER,
                      "The second measurement was post-infusion; time point corrected."), "coordinator")  # fmt: skip
    system = session.exec(
        select(Query).where(
            Query.study_id == study.id, col(Query.check_id).is_not(None),
            Query.state == QueryState.OPEN, col(Query.subject_id).in_([s.id for s in subjects]),
        ).order_by(col(Query.id))
    ).first()  # fmt: skip
    if system is not None:
        apply(QueryChange(system.subject_id, pk(system), system.version, QueryAction.ANSWER,
                          "Value confirmed with the laboratory report."), "coordinator")  # fmt: skip
    _grade_queries(session, study, subjects, apply)
    _verify_sources(session, study, subjects, apply)
    frozen = subjects[3]
    apply(DataLockSet(pk(frozen), "freeze", "Frozen for the interim safety review."), "datamanager")
    _sign(session, study, subjects, apply, password)


def _sign(
    session: Session, study: Study, subjects: Sequence[Subject],
    apply: Callable[[Change, str], write.Outcome], password: str,
) -> None:  # fmt: skip
    """The investigator signs one subject's end-of-study form, which the site then corrects
    (breaking the signature), and the casebook of another subject no query waits on."""
    form = study.forms["F.DS"]
    ref = FormRef("SE.ET", 1, form.oid, 1)
    corrected = None
    for subject in subjects:
        stored = reads.load_form(session, subject, form, ref)
        if stored is None or stored.form_data.status != FormStatus.COMPLETE:
            continue
        if waiting_queries(session, subject, ref):
            continue
        apply(Sign(pk(subject), ref, password, "investigator"), "investigator")
        row = dict(stored.rows["IG.DS"][1])
        last_contact = date.fromisoformat(str(row["DSLCDAT"])) - timedelta(days=1)
        rows = {"IG.DS": {1: {**row, "DSLCDAT": last_contact.isoformat()}}}
        reason = "Last contact was the telephone call the day before."
        edit = FormEdit(rows, base_version=stored.form_data.version, complete=True, reason=reason)
        apply(FormValues(pk(subject), ref, edit), "coordinator")
        corrected = subject
        break
    for subject in reversed(subjects):
        if subject is not corrected and not waiting_queries(session, subject, None):
            apply(Sign(pk(subject), None, password, "investigator"), "investigator")
            return


def _grade_queries(
    session: Session, study: Study, subjects: Sequence[Subject],
    apply: Callable[[Change, str], write.Outcome],
) -> None:  # fmt: skip
    """The site re-grades three CRS episodes against their assessments (EC051 opens a system
    query each); one is put back (the system closes its query), one answered in words."""
    form = study.forms["F.CRS"]
    episodes = []
    for subject in subjects:
        ref = FormRef(LOG_EVENT_OID, 1, form.oid, 1)
        stored = reads.load_form(session, subject, form, ref)
        if stored is not None and stored.rows.get("IG.CRS", {}).get(1, {}).get("CRSGRINV"):
            episodes.append((subject, ref, stored))
    for index, (subject, ref, stored) in enumerate(episodes[:3]):
        row = dict(stored.rows["IG.CRS"][1])
        graded = str(min(int(row["CRSGRINV"] or "1") + 1, 4))

        version = _regrade(
            apply, subject, ref, row, graded, "Re-graded at the investigator's review.",
            stored.form_data.version,
        )  # fmt: skip
        query = session.exec(
            select(Query).where(Query.subject_id == subject.id, Query.check_id == "EC051")
        ).one()
        if index == 1:
            back = "Back to the grade of the daily assessments."
            _regrade(apply, subject, ref, row, str(row["CRSGRINV"]), back, version)
        elif index == 2:
            apply(QueryChange(pk(subject), pk(query), query.version, QueryAction.ANSWER,
                              "Grade kept: oxygen at night was not on the daily rows."), "coordinator")  # fmt: skip


VERIFIED_PER_SUBJECT = 10
"""Forms the demo monitor verifies of each of the site's first two subjects (enough to show,
few enough to keep the demo fast)."""


def _verify_sources(
    session: Session, study: Study, subjects: Sequence[Subject],
    apply: Callable[[Change, str], write.Outcome],
) -> None:  # fmt: skip
    """The monitor verifies complete forms the SDV plan asks of the site's first two
    subjects; then the site adds the time of consent to the first one's verified consent
    form, which drops that verification."""
    if study.sdv is None:
        return
    (site,) = sdv_by_site(session, study, {subjects[0].site_id}, {pk(s) for s in subjects[:2]})
    for subject in subjects[:2]:
        due = [entry for entry in site.due if entry.subject.id == subject.id]
        for entry in due[:VERIFIED_PER_SUBJECT]:
            stored = reads.load_form(session, subject, study.forms[entry.ref.form_oid], entry.ref)
            assert stored is not None
            apply(VerifyForm(pk(subject), entry.ref, stored.form_data.version), "monitor")
    first, ref = subjects[0], FormRef("SE.SCR", 1, "F.IC", 1)
    stored = reads.load_form(session, first, study.forms["F.IC"], ref)
    assert stored is not None
    row = {**stored.rows["IG.IC"][1], "ICTIM": "09:30"}
    reason = "Time of consent added from the signed ICF."
    edit = FormEdit({"IG.IC": {1: row}}, stored.form_data.version, complete=True, reason=reason)
    apply(FormValues(pk(first), ref, edit), "coordinator")


def _author(session: Session, study: Study, username: str) -> write.Author:
    user = session.exec(select(UserAccount).where(UserAccount.username == username)).one()
    return write.Author(load_access(session, user, study.id), audit.Actor(user, "demo"))


def _regrade(
    apply: Callable[[Change, str], write.Outcome], subject: Subject, ref: FormRef,
    row: dict[str, str | None], grade: str, reason: str, version: int,
) -> int:  # fmt: skip
    """Save the episode with the investigator's grade `grade`; returns the new version."""
    rows = {"IG.CRS": {1: {**row, "CRSGRINV": grade}}}
    edit = FormEdit(rows, base_version=version, complete=True, reason=reason)
    return apply(FormValues(pk(subject), ref, edit), "coordinator").version
