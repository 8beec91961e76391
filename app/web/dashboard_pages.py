"""The data manager's dashboard (`/dashboard`) and the two lists behind its numbers that no
other page lists: forms by count (`/dashboard/forms`) and overdue visits
(`/dashboard/overdue`). Its other numbers link to the query list and the subject list,
filtered to the same rows.

Who sees it: everyone who sees subjects, each over the sites where they see them (a data
manager or sponsor the whole study, a monitor their sites, a site user their own site), as
the subject and query lists do; the reads are limited on the server
(`app.review.dashboard_reads.visible_sites`). The charts are inline SVG drawn by the
template (`_charts.html`): no script runs for them."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response

from app.access import Access, Permission
from app.models import Site, utcnow
from app.review import dashboard_reads as counts
from app.review.query_ages import AGE_BANDS
from app.review.query_reads import PENDING
from app.study.loader import Study
from app.web.deps import SessionDep, StudyDep, requires
from app.web.pages import render

router = APIRouter(include_in_schema=False, default_response_class=HTMLResponse)
ViewerDep = Annotated[Access, requires(Permission.VIEW_SUBJECTS)]
SiteParam = Annotated[str | None, Query(max_length=4)]


def link(path: str, site: Site | None, **filters: str) -> str:
    """`path` filtered to `site` (None: every site shown) and `filters`."""
    params = ({"site": site.number} if site else {}) | filters
    return f"{path}?{urlencode(params)}" if params else path


def queries_link(site: Site | None, band: str | None = None) -> str:
    """The query list of the open queries a number counts."""
    return link("/queries", site, state=PENDING, **({"band": band} if band else {}))


def dashboard_context(study: Study, board: counts.Dashboard, *, study_wide: bool) -> dict[str, Any]:
    """What `dashboard.html` shows of `board` (`study_wide`: the user sees every site)."""
    scope = (
        "the study" if study_wide
        else f"site {board.sites[0].site.number}" if len(board.sites) == 1 and board.sites[0].site
        else "your sites"
    )  # fmt: skip
    return {
        "board": board, "scope": scope, "total_label": "All sites" if study_wide else "Your sites",
        "bands": [b.label for b in AGE_BANDS],
        "age_bars": [
            (f"{b.label} days", n) for b, n in zip(AGE_BANDS, board.study.queries_by_age, strict=True)
        ],
        "statuses": study.subject_path.statuses,
        "dose_levels": [*(level.code for level in study.info.dose_levels), counts.NO_DOSE_LEVEL],
        "no_dose": counts.NO_DOSE_LEVEL,
        "form_kinds": {kind.value for kind in counts.FormKind},
        "link": link, "queries_link": queries_link,
    }  # fmt: skip


@router.get("/dashboard")
def dashboard_page(
    request: Request, session: SessionDep, study: StudyDep, access: ViewerDep
) -> Response:
    board = counts.dashboard(session, study, access, now=utcnow())
    study_wide = access.site_ids(Permission.VIEW_SUBJECTS) is None
    context = {"access": access, **dashboard_context(study, board, study_wide=study_wide)}
    return render(request, "dashboard.html", context)


def _sites(session: SessionDep, access: Access, number: str | None) -> tuple[list[Site], str]:
    """The sites a list covers: every site the user sees, or the one numbered `number` if
    it is one of them (none otherwise); and the heading's words for them."""
    sites = counts.visible_sites(session, access)
    if not number:
        return sites, ""
    return [site for site in sites if site.number == number], f" at site {number}"


@router.get("/dashboard/forms")
def forms_page(
    request: Request,
    session: SessionDep,
    study: StudyDep,
    access: ViewerDep,
    kind: counts.FormKind = counts.FormKind.ENTERED,
    site: SiteParam = None,
) -> Response:
    """The forms one of the dashboard's form counts counts."""
    sites, where = _sites(session, access, site)
    context = {
        "access": access, "rows": counts.forms_of(session, sites, kind), "kind": kind,
        "limit": counts.FORM_LIST_LIMIT, "where": where,
        "titles": {oid: form.title for oid, form in study.forms.items()},
    }  # fmt: skip
    return render(request, "dashboard_forms.html", context)


@router.get("/dashboard/overdue")
def overdue_page(
    request: Request,
    session: SessionDep,
    study: StudyDep,
    access: ViewerDep,
    site: SiteParam = None,
) -> Response:
    """Overdue visits, by subject, with their windows."""
    sites, where = _sites(session, access, site)
    rows = counts.overdue_visits(session, study, sites, now=utcnow())
    return render(
        request, "dashboard_overdue.html", {"access": access, "rows": rows, "where": where}
    )
