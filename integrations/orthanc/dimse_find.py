"""C-FIND received by Orthanc, answered as Orthanc 1.10.1's own handler answers it.

Invariant: ``FindEngine.answer`` computes, from Orthanc's built-in REST API only
(``/tools/find`` for the matching, so wildcards, ranges, lists and the limits are
Orthanc's own), the same answers ``OrthancFindRequestHandler`` would: for each match, in
Orthanc's order, the Retrieve AE Title, the query's QueryRetrieveLevel and every other
key of the query, filled from the main DICOM tags of the match and of one of its
instances (or the instance's file when the query asks for other tags or a sequence),
with the counters (NumberOf...RelatedInstances, ModalitiesInStudy, SOPClassesInStudy)
computed. It raises ``FindRefused`` where Orthanc would fail the C-FIND. What cannot be
identical is listed in docs/orthanc.md ("C-FIND").
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from integrations.orthanc import dimse_tags as T
from integrations.orthanc.dimse_counters import PATHS, counters, main_tags

_CHILDREN: Final = {"Patient": "Studies", "Study": "Series", "Series": "Instances"}
_BELOW: Final = {"Patient": "Study", "Study": "Series", "Series": "Instance"}


class FindRefused(Exception):
    """Orthanc would fail this C-FIND (status 0xC000, Unable to process)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class FindSettings:
    """The Orthanc options its C-FIND handler reads."""

    retrieve_aet: str = "ORTHANC"
    case_sensitive_pn: bool = False
    limit_results: int = 0
    limit_instances: int = 0
    #: ``StorageAccessOnFind``: ``Always`` (match and answer from the files when the
    #: query needs other than main tags), ``Answers`` (answer only), ``Never``.
    storage_access: str = "Always"

    @classmethod
    def from_orthanc(cls, configuration: Mapping[str, object]) -> FindSettings:
        def integer(name: str) -> int:
            value = configuration.get(name, 0)
            return value if isinstance(value, int) and value > 0 else 0

        return cls(
            retrieve_aet=str(configuration.get("DicomAet", "ORTHANC")),
            case_sensitive_pn=configuration.get("CaseSensitivePN", False) is True,
            limit_results=integer("LimitFindResults"),
            limit_instances=integer("LimitFindInstances"),
            storage_access=str(configuration.get("StorageAccessOnFind", "Always")),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class FindAnswer:
    """One answer: the Orthanc id of the match and the answer's tags (``0010,0010``: value)."""

    resource: str
    tags: Mapping[str, object]
    #: Whose PHI it is, as cheaply as Orthanc's answer tells: (level, Orthanc id) of the
    #: match's study for a series, of its series for an instance, else of the match.
    subject: tuple[str, str] = ("", "")


@dataclass(frozen=True, slots=True, kw_only=True)
class FindOutcome:
    level: str
    answers: tuple[FindAnswer, ...]
    complete: bool
    criteria: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class _Plan:
    level: str
    raw_level: str
    sequences: frozenset[str]
    constraints: Mapping[str, str]
    #: Orthanc matches on the files (a key that is not a main DICOM tag, ``Always``).
    lookup_on_file: bool
    #: Orthanc answers from the sample instance's file.
    needs_file: bool


@dataclass(slots=True)
class _Match:
    """One matching resource and what was read about it (lazily)."""

    level: str
    resource: dict[str, Any]
    main: dict[str, str] = field(default_factory=dict)
    lowest: dict[str, Any] | None = None
    lowest_level: str = ""
    file: dict[str, Any] | None = None
    up: bool = False


class FindEngine:
    """Answers a C-FIND query (a list of (tag, value)) through Orthanc's REST API."""

    def __init__(
        self,
        get: Callable[[str], Any],
        post: Callable[[str, object], Any],
        settings: FindSettings,
    ) -> None:
        self._get = get
        self._post = post
        self._settings = settings

    def answer(self, query: Sequence[tuple[str, str]]) -> FindOutcome:
        plan = self._plan(query)
        settings = self._settings
        limit = settings.limit_instances if plan.level == "Instance" else settings.limit_results
        kept: list[FindAnswer] = []
        passed = 0
        for match in self._matches(plan.level, plan.constraints):
            if not self._case_sensitive_ok(match, plan.constraints, plan.lookup_on_file):
                continue
            passed += 1
            if limit and len(kept) >= limit:
                continue
            kept.append(FindAnswer(
                resource=str(match.resource.get("ID")),
                tags=self._build(match, query, plan),
                subject=_subject(match),
            ))  # fmt: skip
        if not limit:
            complete = True
        elif plan.level == "Study" and T.MODALITIES_IN_STUDY in plan.constraints:
            # Orthanc runs it as a series query and sends the studies sorted by UID,
            # complete when all of them fitted.
            complete = passed <= limit
        else:
            complete = self._candidates(plan.level, plan.constraints) <= limit
        criteria = tuple((t, v) for t, v in query if v and t in plan.constraints)
        return FindOutcome(level=plan.level, answers=tuple(kept), complete=complete,
                           criteria=criteria)  # fmt: skip

    def _plan(self, query: Sequence[tuple[str, str]]) -> _Plan:
        """What Orthanc's handler decides before it looks anything up."""
        raw_level = dict(query).get(T.QUERY_RETRIEVE_LEVEL) or ""
        level = T.LEVELS.get(raw_level.strip().upper())
        if level is None:
            raise FindRefused("missing or unknown QueryRetrieveLevel")
        special = (T.QUERY_RETRIEVE_LEVEL, T.SPECIFIC_CHARACTER_SET)
        sequences = frozenset(t for t, v in query if v == "" and T.vr_of(t) == "SQ")
        constraints = {t: v for t, v in query if v and t not in special and not t.endswith(",0000")}
        access = self._settings.storage_access
        lookup_on_file = access == "Always" and any(t not in T.MAIN_TAGS for t in constraints)
        other_tags = any(
            t not in T.MAIN_TAGS and t not in T.ALL_COUNTERS for t, _ in query if t not in special
        )
        needs_file = lookup_on_file or (
            access in ("Always", "Answers") and (bool(sequences) or other_tags)
        )
        return _Plan(level=level, raw_level=raw_level, sequences=sequences,
                     constraints=constraints, lookup_on_file=lookup_on_file,
                     needs_file=needs_file)  # fmt: skip

    # ------------------------------------------------------------------ matching

    def _matches(self, level: str, constraints: Mapping[str, str]) -> list[_Match]:
        body = {
            "Level": level,
            "Query": dict(constraints),
            "Expand": True,
            "Short": True,
            "CaseSensitive": self._settings.case_sensitive_pn,
        }
        found = self._post("/tools/find", body)
        if not isinstance(found, list):
            raise FindRefused("unexpected /tools/find answer")
        out = []
        for resource in found:
            if isinstance(resource, dict):
                out.append(_Match(level=level, resource=resource, main=main_tags(resource)))
        return out

    def _candidates(self, level: str, constraints: Mapping[str, str]) -> int:
        """How many resources Orthanc's index would hand its C-FIND for matching: those
        matching the main-tag keys (at most the limit + 1; more means incomplete)."""
        main = {tag: value for tag, value in constraints.items() if tag in T.MAIN_TAGS}
        body = {"Level": level, "Query": main, "CaseSensitive": self._settings.case_sensitive_pn}
        found = self._post("/tools/find", body)
        return len(found) if isinstance(found, list) else 0

    def _case_sensitive_ok(
        self, match: _Match, constraints: Mapping[str, str], on_file: bool
    ) -> bool:
        """``/tools/find`` compared every key as PersonNames are compared (CaseSensitivePN);
        Orthanc's C-FIND compares the others case-sensitively: re-check those."""
        if self._settings.case_sensitive_pn:
            return True
        for tag, constraint in constraints.items():
            if tag in T.ALL_COUNTERS or constraint.upper() == constraint.lower():
                continue
            vr = T.vr_of(tag)
            if vr == "PN":
                continue
            value = self._value(match, tag, file=on_file or tag not in T.MAIN_TAGS)
            if not T.case_sensitive_match(vr, constraint, value):
                return False
        return True

    # ------------------------------------------------------------------ values

    def _ancestors(self, match: _Match) -> None:
        """Add the main tags of the match's parents (Orthanc merges all four levels)."""
        resource = match.resource
        if match.level == "Series" and isinstance(resource.get("ParentStudy"), str):
            match.main.update({k: v for k, v in self._study_tags(resource["ParentStudy"]).items()
                               if k not in match.main})  # fmt: skip
        elif match.level == "Instance" and isinstance(resource.get("ParentSeries"), str):
            series = self._resource("Series", resource["ParentSeries"])
            for k, v in main_tags(series).items():
                match.main.setdefault(k, v)
            if isinstance(series.get("ParentStudy"), str):
                for k, v in self._study_tags(series["ParentStudy"]).items():
                    match.main.setdefault(k, v)

    def _study_tags(self, study: str) -> dict[str, str]:
        return main_tags(self._resource("Study", study))

    def _resource(self, level: str, resource: str) -> dict[str, Any]:
        value = self._get(f"/{PATHS[level]}/{resource}?short")
        return value if isinstance(value, dict) else {}

    def _descend(self, match: _Match) -> dict[str, Any] | None:
        """Orthanc's sample instance of the match: its first child, down to an instance."""
        if match.lowest is None:
            match.lowest, match.lowest_level = match.resource, match.level
        while match.lowest_level != "Instance":
            children = match.lowest.get(_CHILDREN[match.lowest_level])
            if not isinstance(children, list) or not children:
                return None
            level = _BELOW[match.lowest_level]
            match.lowest = self._resource(level, str(children[0]))
            match.lowest_level = level
        return match.lowest

    def _file(self, match: _Match) -> dict[str, Any]:
        if match.file is None:
            instance = self._descend(match)
            tags = self._get(f"/instances/{instance['ID']}/tags?short") if instance else {}
            match.file = {k.lower(): v for k, v in tags.items()} if isinstance(tags, dict) else {}
        return match.file

    def _value(self, match: _Match, tag: str, *, file: bool) -> str | None:
        """A tag's value as Orthanc 1.10 reads it: from the sample instance's file, or from
        the main DICOM tags of the match's level and the levels above only (since 1.6.0)."""
        if file:
            value = self._file(match).get(tag)
            return value if isinstance(value, str) else None
        if tag not in match.main and not match.up:
            match.up = True
            self._ancestors(match)
        return match.main.get(tag)

    # ------------------------------------------------------------------ answers

    def _build(
        self, match: _Match, query: Sequence[tuple[str, str]], plan: _Plan
    ) -> dict[str, object]:
        tags: dict[str, object] = {T.RETRIEVE_AE_TITLE: self._settings.retrieve_aet}
        for tag, _ in query:
            if tag == T.QUERY_RETRIEVE_LEVEL:
                tags[tag] = plan.raw_level
            elif tag == T.SPECIFIC_CHARACTER_SET or tag in plan.sequences:
                continue
            else:
                tags[tag] = self._value(match, tag, file=plan.needs_file) or ""
        tags.update(counters(self._get, match.level, match.resource, {t for t, _ in query}))
        if plan.needs_file:
            for tag in sorted(plan.sequences):
                content = self._file(match).get(tag)
                if isinstance(content, list):
                    tags[tag] = content
        return tags


def _subject(match: _Match) -> tuple[str, str]:
    parents = {"Series": ("Study", "ParentStudy"), "Instance": ("Series", "ParentSeries")}
    if match.level in parents:
        level, key = parents[match.level]
        parent = match.resource.get(key)
        if isinstance(parent, str):
            return level, parent
    return match.level, str(match.resource.get("ID"))


def rest_json(call: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap ``orthanc.RestApiGet``/``RestApiPost``: JSON in (for POST), JSON out; a
    metadata value (plain text) comes back as a string."""

    def wrapped(uri: str, *body: object) -> Any:
        raw = call(uri, json.dumps(body[0])) if body else call(uri)
        text = bytes(raw).decode("utf-8")
        try:
            return json.loads(text)
        except ValueError:
            return text

    return wrapped
