"""Absences (a column's time away, its reason not modelled), in both directions; sandbox scenarios carry them."""

from __future__ import annotations

from otv.v1 import practice_pb2
from otv_sdk.conversion.instants import interval_from_proto, interval_to_proto
from otv_sdk.models import Absence
from otv_sdk.resources import format_name, parse_practice_child

__all__ = ["absence_from_proto", "absence_to_proto"]


def absence_to_proto(practice_id: str, absence: Absence) -> practice_pb2.Absence:
    return practice_pb2.Absence(
        column=format_name(practice_id, "columns", absence.column_id),
        interval=interval_to_proto(absence.interval),
    )


def absence_from_proto(practice_id: str, msg: object, field: str) -> Absence:
    return Absence(
        column_id=parse_practice_child(msg.column, f"{field}.column", "columns", practice_id),  # type: ignore[attr-defined]
        interval=interval_from_proto(msg.interval, f"{field}.interval"),  # type: ignore[attr-defined]
    )
