"""Test cases: a stable id, the requirement it checks, whether it decides the verdict, what it needs.

Ids never change meaning: a changed check gets a new id, and a new suite version. Cases are
plain async functions of a `Session`; a failed expectation raises `CheckFailed`, anything else
that escapes is recorded as an error (which counts as a failure for required tests).
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from otv_conformance.requirements import REQUIREMENTS
from otv_sdk.models import Capability

if TYPE_CHECKING:
    from otv_conformance.session import Session

__all__ = ["SUITE_VERSION", "Case", "CheckFailed", "Group", "Result", "all_cases", "case", "check"]

SUITE_VERSION = "1.3.0"  # 1.3.0: the written entry's source, type and category checked remotely too (issue 19)


class Group(enum.Enum):
    READER = "reader"
    ROBUSTNESS = "robustness"
    PATIENTS = "patients"
    CONSENT = "consent"
    WRITER = "writer"
    PVS = "pvs"


# The capability a group needs; a group whose capability the adapter does not declare is not applicable.
GROUP_CAPABILITY = {
    Group.READER: Capability.READER,
    Group.ROBUSTNESS: Capability.READER,
    Group.PATIENTS: Capability.PATIENT_LOOKUP,
    Group.CONSENT: Capability.CONSENT,
    Group.WRITER: Capability.WRITER,
    Group.PVS: Capability.WRITER,
}


class Result(enum.Enum):
    PASS = "pass"
    FAIL = "fail"
    ERROR = "error"
    SKIP = "skip"  # not applicable: the adapter does not declare the capability


class CheckFailed(AssertionError):
    """An expectation of the suite was not met; the message says what was expected and seen."""


def check(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


# A case returns None, or a note for the report when it passed with a limit worth stating (what the
# transport does not carry, so it could not be checked that way).
CaseFunction = Callable[["Session"], Awaitable[str | None]]


@dataclass(frozen=True, slots=True)
class Case:
    id: str
    requirement: str
    group: Group
    required: bool
    title: str
    run: CaseFunction

    @property
    def capability(self) -> Capability:
        return GROUP_CAPABILITY[self.group]


_REGISTRY: list[Case] = []


def case(
    case_id: str, requirement: str, group: Group, *, required: bool = True
) -> Callable[[CaseFunction], CaseFunction]:
    """Register a case; its docstring's first line is its title."""
    if requirement not in REQUIREMENTS:
        raise ValueError(f"{case_id}: unknown requirement {requirement}")

    def register(function: CaseFunction) -> CaseFunction:
        if any(c.id == case_id for c in _REGISTRY):
            raise ValueError(f"duplicate case id {case_id}")
        title = (function.__doc__ or case_id).strip().splitlines()[0]
        _REGISTRY.append(Case(case_id, requirement, group, required, title, function))
        return function

    return register


def all_cases() -> list[Case]:
    """Every case of this suite version, in the order they run (groups in `Group` order)."""
    import otv_conformance.checks  # noqa: F401 - registers the cases

    order = list(Group)
    return sorted(_REGISTRY, key=lambda c: order.index(c.group))
