"""Load a study definition folder into a `Study`, reporting every problem at once.

Folder layout (documented in `forms/README.md`):
    study.yaml          StudyInfo
    schedule.yaml       Schedule (anchors, periods, visits, log forms)
    subject_path.yaml   SubjectPath (statuses and the transitions between them)
    signatures.yaml     SignatureSettings (optional: what the investigator signs)
    codelists/*.yaml    CodeListFile
    units/*.yaml        UnitFile
    ecrf/*.yaml         one FormDef per file
    checks/*.yaml       CheckFile (edit checks)
    sdv.yaml            SdvPlan (optional: the source data verification plan)
    escalation.yaml     EscalationRules (optional: the 3+3 dose escalation's parameters)
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError
from yaml.constructor import SafeConstructor

from app.study.dependencies import DependencyIndex, build_dependencies
from app.study.edit_checks import CheckFile, EditCheck
from app.study.escalation_rules import EscalationRules
from app.study.model import (
    CodeList,
    CodeListFile,
    FormDef,
    ItemDef,
    ItemGroupDef,
    MeasurementUnit,
    Schedule,
    SignatureSettings,
    StudyInfo,
    SubjectPath,
    UnitFile,
    Visit,
)
from app.study.problems import Problem, SourceFile, StudyDefinitionError
from app.study.retired import RetiredDefinitions
from app.study.sdv_plan import SdvPlan
from app.study.validation import follows_from, salvage, validation_problems

try:  # libyaml's parser, in PyYAML's wheels: about ten times faster than the pure-Python one
    from yaml import CSafeLoader as YamlLoader
except ImportError:  # PyYAML built without libyaml
    from yaml import SafeLoader as YamlLoader  # type: ignore[assignment]

ModelT = TypeVar("ModelT", bound=BaseModel)

LOG_EVENT_OID = "SE.LOG"
"""The StudyEvent that holds log forms (forms that belong to no visit)."""


@dataclass(frozen=True)
class Study:
    """A loaded, checked study definition with look-ups by OID and name."""

    info: StudyInfo
    schedule: Schedule
    subject_path: SubjectPath
    forms: dict[str, FormDef]
    codelists: dict[str, CodeList]
    units: dict[str, MeasurementUnit]
    sources: dict[str, SourceFile] = field(repr=False)
    form_files: dict[str, str] = field(repr=False)
    """Form OID -> display name of the file it was read from."""
    db_id: int | None = None
    """The study's row in the database, once bound to it (`app.studies.bind`)."""
    version: int = 0
    """The released definition version it runs as (0 until bound)."""
    sdtm_dir: Path | None = None
    """The folder of the study's SDTM mappings, if it has them."""
    checks: tuple[EditCheck, ...] = ()
    """The edit checks of `checks/`, in file then declaration order."""
    check_files: tuple[str, ...] = field(default=(), repr=False)
    """The display name of the file each check of `checks` was read from."""
    retired: RetiredDefinitions = field(default_factory=RetiredDefinitions, repr=False)
    """Items, item groups and forms that earlier released versions had and this one removed:
    their stored values are kept, shown and exported (`app.studies.bind`)."""
    sdv: SdvPlan | None = None
    """The source data verification plan (`sdv.yaml`); None when the study has none. It is
    the monitoring plan, not the eCRF: it is no part of `content`, so changing it releases
    no new definition version."""
    signatures: SignatureSettings | None = None
    """What the investigator signs (`signatures.yaml`); None: the study signs nothing."""
    escalation: EscalationRules | None = None
    """The 3+3 dose escalation's parameters (`escalation.yaml`), over `info.dose_levels` in
    order; None: the study escalates no dose."""

    @property
    def mdv_oid(self) -> str:
        """The ODM MetaDataVersion OID of the running definition, e.g. MDV.ZM001.1."""
        return f"MDV.{self.info.oid}.{self.version}"

    @property
    def id(self) -> int:
        """The database id of a bound study."""
        assert self.db_id is not None, f"study {self.info.oid} is not bound to a database"
        return self.db_id

    def form(self, oid: str) -> FormDef:
        return self.forms[oid]

    @cached_property
    def content(self) -> dict[str, Any]:
        """The definition as plain JSON data: what a released version stores. Formatting and
        comments of the YAML files are not part of it."""

        def dump(model: BaseModel) -> dict[str, Any]:
            # What the files say, defaults left out: the dump reads back as the same model.
            return model.model_dump(mode="json", by_alias=True, exclude_defaults=True)

        content = {
            "info": dump(self.info),
            "schedule": dump(self.schedule),
            "subject_path": dump(self.subject_path),
            "forms": [dump(form) for form in self.forms.values()],
            "codelists": [dump(codelist) for codelist in self.codelists.values()],
            "units": [dump(unit) for unit in self.units.values()],
        }
        if self.checks:  # a study without checks keeps the digest it had before checks existed
            content["checks"] = [dump(check) for check in self.checks]
        if self.signatures is not None:  # likewise for a study that signs nothing
            content["signatures"] = dump(self.signatures)
        if self.escalation is not None:  # and for one without a dose escalation
            content["escalation"] = dump(self.escalation)
        return content

    @cached_property
    def digest(self) -> str:
        """SHA-256 of `content`: the same definition, however its files are laid out or
        commented, has the same digest."""
        text = json.dumps(self.content, sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(text.encode()).hexdigest()

    @cached_property
    def dependencies(self) -> DependencyIndex:
        """Which expressions read which items of other forms (built once, at load)."""
        return build_dependencies(self)

    def form_by_name(self, name: str) -> FormDef | None:
        return self._forms_by_name.get(name)

    @cached_property
    def _forms_by_name(self) -> dict[str, FormDef]:
        return {form.name: form for form in self.forms.values()}

    def visit(self, oid: str) -> Visit | None:
        return next((visit for visit in self.schedule.visits if visit.oid == oid), None)

    def log_form_oids(self) -> tuple[str, ...]:
        return tuple(log.form for log in self.schedule.log_forms)

    def forms_of_event(self, event_oid: str) -> tuple[str, ...]:
        if event_oid == LOG_EVENT_OID:
            return self.log_form_oids()
        visit = self.visit(event_oid)
        return () if visit is None else tuple(entry.form for entry in visit.forms)

    def is_repeating_form(self, event_oid: str, form_oid: str) -> bool:
        if event_oid != LOG_EVENT_OID:
            return False
        return any(log.form == form_oid and log.repeating for log in self.schedule.log_forms)


def all_items(form: FormDef) -> list[tuple[ItemGroupDef, ItemDef]]:
    return [(group, item) for group in form.item_groups for item in group.items]


def find_item(form: FormDef, name: str) -> tuple[ItemGroupDef, ItemDef] | None:
    return next(((g, i) for g, i in all_items(form) if i.name == name), None)


def load_study(directory: Path) -> Study:
    """Load and check a definition folder; raises StudyDefinitionError listing every problem,
    each once. The whole-study checks run even when some files have schema errors: on what
    of those files could still be read, leaving out the problems that follow from the rest."""
    from app.study.check import check_study  # check needs Study; imported here to avoid a cycle

    study, problems, left_out = _parse(directory)
    if study is not None:
        problems += [p for p in check_study(study) if not follows_from(p, left_out)]
    if problems:
        raise StudyDefinitionError(list(dict.fromkeys(problems)))
    assert study is not None
    study.dependencies  # noqa: B018 - built now, not on the first save
    return study


def study_problems(directory: Path) -> list[Problem]:
    """Every problem of a definition folder; empty when it is usable."""
    try:
        load_study(directory)
    except StudyDefinitionError as error:
        return error.problems
    return []


def _parse(directory: Path) -> tuple[Study | None, list[Problem], set[str]]:
    """The study as far as its files can be read, their problems, and the names and OIDs of
    what had to be left out of it (see `app.study.validation.salvage`). No study when a
    file it cannot do without is unusable, or when a file is not YAML at all (what it holds,
    and so what follows from its absence, is not known)."""
    problems: list[Problem] = []
    left_out: set[str] = set()
    unreadable: list[Path] = []
    if not directory.is_dir():
        return None, [Problem(str(directory), None, "", "is not a folder")], left_out
    sources: dict[str, SourceFile] = {}

    form_files: dict[str, str] = {}

    def read(path: Path, model: type[ModelT]) -> ModelT | None:
        source, data, problem = _read_yaml(path, directory)
        if problem is not None:
            problems.append(problem)
            unreadable.append(path)
            return None
        sources[source.display] = source
        try:
            return model.model_validate(data)
        except ValidationError as error:
            problems.extend(validation_problems(source, model, data, error))
            salvaged = salvage(model, data, error)
        left_out.update(salvaged.left_out)
        sources[source.display] = source.without(salvaged.removed)
        return salvaged.model

    info = read(directory / "study.yaml", StudyInfo)
    schedule = read(directory / "schedule.yaml", Schedule)
    subject_path = read(directory / "subject_path.yaml", SubjectPath)
    signatures_file = directory / "signatures.yaml"
    signatures = read(signatures_file, SignatureSettings) if signatures_file.is_file() else None
    codelists = [read(path, CodeListFile) for path in _yaml_files(directory / "codelists")]
    units = [read(path, UnitFile) for path in _yaml_files(directory / "units")]
    forms: dict[str, FormDef] = {}
    for path in _yaml_files(directory / "ecrf"):
        form = read(path, FormDef)
        if form is not None and form.oid in forms:
            first = form_files[form.oid]
            problems.append(
                sources[_display(path, directory)].problem(
                    ("oid",), f"duplicate OID {form.oid}: already used by the form in {first}"
                )
            )
        elif form is not None:
            forms[form.oid] = form
            form_files[form.oid] = _display(path, directory)
    checks: list[EditCheck] = []
    check_files: list[str] = []
    for path in _yaml_files(directory / "checks"):
        check_file = read(path, CheckFile)
        for check in check_file.checks if check_file else ():
            checks.append(check)
            check_files.append(_display(path, directory))
    sdv = read(directory / "sdv.yaml", SdvPlan) if (directory / "sdv.yaml").is_file() else None
    escalation_file = directory / "escalation.yaml"
    escalation = read(escalation_file, EscalationRules) if escalation_file.is_file() else None
    if not forms and not problems:
        problems.append(Problem(f"{directory.name}/ecrf", None, "", "holds no form definitions"))

    if unreadable or info is None or schedule is None or subject_path is None or not forms:
        return None, problems, left_out
    study = Study(
        info=info,
        schedule=schedule,
        subject_path=subject_path,
        forms=forms,
        codelists={cl.oid: cl for file in codelists if file for cl in file.codelists},
        units={unit.oid: unit for file in units if file for unit in file.units},
        sources=sources,
        form_files=form_files,
        checks=tuple(checks),
        check_files=tuple(check_files),
        sdv=sdv,
        signatures=signatures,
        escalation=escalation,
    )
    return study, problems, left_out


def _yaml_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.yaml")) if folder.is_dir() else []


def _display(path: Path, root: Path) -> str:
    """How a file is named in problem reports: relative to the folder above the definition."""
    return str(path.relative_to(root.parent)) if path.is_relative_to(root.parent) else str(path)


def _read_yaml(path: Path, root: Path) -> tuple[SourceFile, Any, Problem | None]:
    """The file's node tree (for line numbers) and its values, built from that one parse."""
    display = _display(path, root)
    empty = SourceFile(path, display, None)
    if not path.is_file():
        return empty, None, Problem(display, None, "", "file is missing")
    try:
        text = path.read_text(encoding="utf-8")
        node = yaml.compose(text, Loader=YamlLoader)
        data = None if node is None else SafeConstructor().construct_document(node)
    except UnicodeDecodeError as error:
        return empty, None, Problem(display, None, "", f"is not UTF-8 text: {error}")
    except yaml.MarkedYAMLError as error:
        line = error.problem_mark.line + 1 if error.problem_mark else None
        return empty, None, Problem(display, line, "", f"is not valid YAML: {error.problem}")
    return SourceFile(path, display, node), data, None
