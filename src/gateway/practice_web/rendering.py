"""Server-rendered HTML: Jinja2 with autoescaping always on, German labels and messages."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import jinja2

from gateway.patient_matching import GENDER_LABELS as _GENDERS
from otv_sdk.errors import Aborted, FailedPrecondition, InvalidArgument, NotFound, OtvError, PermissionDenied

__all__ = ["Renderer", "german_error"]

SERVICE_LABELS = {
    "reader": "Termine und freie Zeiten lesen",
    "writer": "Termine buchen und absagen",
    "patient_lookup": "Patienten suchen und anlegen",
    "consent": "Einwilligungen erfassen",
}
STATE_LABELS = {
    "booked": "gebucht",
    "cancelled": "storniert",
    "rejected": "abgelehnt",
    "pending_practice": "wartet auf Bestätigung",
    "pending_transfer": "wartet auf Übertragung",
    "rescheduled": "verlegt",
    "writing": "wird eingetragen",
}
KIND_LABELS = {"confirmation": "Bestätigung", "transfer": "Manuelle Übertragung"}
CONTACT_LABELS = {"phone": "Telefon", "mobile": "Mobil", "email": "E-Mail"}
GENDER_LABELS = {g.value: label for g, label in _GENDERS.items()}


def german_error(error: OtvError) -> str:
    """A message for staff; the English detail stays in the gateway."""
    if isinstance(error, FailedPrecondition):
        return "Diese Buchung ist bereits entschieden oder kann so nicht mehr geändert werden."
    if isinstance(error, Aborted):
        return "Die Buchung hat sich inzwischen geändert. Bitte prüfen Sie sie erneut und entscheiden Sie dann."
    if isinstance(error, NotFound):
        return "Diese Buchung oder dieser Partner ist nicht (mehr) vorhanden."
    if isinstance(error, InvalidArgument):
        fields = ", ".join(sorted({v.field for v in error.violations}))
        return "Die Eingabe ist ungültig" + (f" ({fields})." if fields else ".")
    if isinstance(error, PermissionDenied):
        return "Dafür fehlt die Berechtigung."
    return "Die Aktion ist fehlgeschlagen. Bitte versuchen Sie es später erneut."


class Renderer:
    def __init__(self, time_zone: str = "Europe/Berlin") -> None:
        self._zone = ZoneInfo(time_zone)
        env = jinja2.Environment(
            loader=jinja2.PackageLoader("gateway.practice_web", "templates"),
            autoescape=True,  # every value is escaped unless marked safe; nothing here marks one
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        env.filters.update(
            local_date=self._local_date,
            local_time=self._local_time,
            local_datetime=self._local_datetime,
            birth_date=lambda d: d.strftime("%d.%m.%Y") if isinstance(d, date) else "",
            minutes=lambda td: int(td.total_seconds() // 60) if isinstance(td, timedelta) else 0,
            age=self._age,
        )
        env.globals.update(
            new_request_id=lambda: str(uuid.uuid4()),
            SERVICE_LABELS=SERVICE_LABELS,
            STATE_LABELS=STATE_LABELS,
            KIND_LABELS=KIND_LABELS,
            CONTACT_LABELS=CONTACT_LABELS,
            GENDER_LABELS=GENDER_LABELS,
        )
        self._env = env

    def render(self, template: str, **context: Any) -> str:
        return self._env.get_template(template).render({"message": "", "error": "", "session": None, **context})

    def _local(self, value: datetime) -> datetime:
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(self._zone)

    def _local_date(self, value: datetime) -> str:
        return self._local(value).strftime("%d.%m.%Y")

    def _local_time(self, value: datetime) -> str:
        return self._local(value).strftime("%H:%M")

    def _local_datetime(self, value: datetime) -> str:
        return self._local(value).strftime("%d.%m.%Y %H:%M")

    def _age(self, value: datetime) -> str:
        seconds = int((datetime.now(UTC) - self._local(value)).total_seconds())
        if seconds < 60:
            return "gerade eben"
        if seconds < 3600:
            return f"vor {seconds // 60} Min."
        if seconds < 86400:
            return f"vor {seconds // 3600} Std."
        return f"vor {seconds // 86400} Tagen"
