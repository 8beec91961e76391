"""What a form page shows of its queries: a badge next to each item with queries, and the
panel below the form where the site answers and a data manager or monitor acts."""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel import Session

from app.access import Access, Permission
from app.crf.changes import FormRef
from app.models import AuditRecord, Query, Subject
from app.review.query_reads import form_queries, query_history, who_acts
from app.study.model import FormDef
from app.web.formview import field_id, field_name


@dataclass(frozen=True)
class QueryView:
    query: Query
    where: str
    """The item's label and row, or "the whole form"."""
    field_id: str | None
    """The id of the item's field on the page, for the link from the panel."""
    history: list[AuditRecord]
    who_acts: str | None


def form_query_context(
    session: Session, access: Access, subject: Subject, form: FormDef, ref: FormRef
) -> dict[str, object]:
    """Template variables: `queries` (the panel), `item_queries` (field name -> queries, for
    the badges), `can_answer`, `can_manage`."""
    items = {item.oid: (group, item) for group in form.item_groups for item in group.items}
    views = []
    by_field: dict[str, list[Query]] = {}
    for query in form_queries(session, subject, ref):
        found = items.get(query.item_oid or "")
        if found is None:
            views.append(
                QueryView(
                    query,
                    "the whole form",
                    None,
                    query_history(session, query),
                    who_acts(query.state),
                )
            )
            continue
        group, item = found
        repeat = query.group_repeat or 1
        where = f"{item.label} (row {repeat})" if group.repeating else item.label
        by_field.setdefault(field_name(group.oid, repeat, item.name), []).append(query)
        views.append(
            QueryView(
                query, where, field_id(group.oid, repeat, item.name),
                query_history(session, query), who_acts(query.state),
            )
        )  # fmt: skip
    return {
        "queries": views,
        "item_queries": by_field,
        "can_answer": access.can(Permission.ANSWER_QUERIES, subject.site_id),
        "can_manage": access.can(Permission.MANAGE_QUERIES, subject.site_id),
        "query_items": [
            (f"{group.oid}:{item.oid}", item.label)
            for group in form.item_groups
            if not group.repeating
            for item in group.items
        ],
    }
