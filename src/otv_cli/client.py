"""`otv client ...`: call a gateway as a partner, one command per step of a booking.

otv client calendars --practice demo                       columns and appointment types
otv client busy --practice demo --days 7                   busy times, no patient data
otv client slots --practice demo --type kontrolle          the next bookable slots (--start-in-days 2: later)
otv client patient --practice demo --given-name Erika --family-name Musterfrau --birth-date 1980-04-01
                                                           find or create a patient: prints its id
otv client hold --practice demo --type kontrolle --column COLUMN --start 2026-12-01T09:00:00+01:00 --patient ID
otv client confirm --practice demo --hold HOLD             the appointment: id, state, etag
otv client appointments --practice demo                    the partner's appointments
otv client cancel --practice demo --appointment ID --etag ETAG

Every call is signed with the key file given by --key (default: var/demo-partner.key, which
`otv demo` writes). A missing or unreadable key file is an error (exit code 2): a call is never
sent unsigned.
"""

from __future__ import annotations

import argparse
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from otv_sdk.client import PartnerClient
from otv_sdk.errors import Unavailable
from otv_sdk.models import Appointment, Contact, ContactKind, Interval
from otv_sdk.ports import AppointmentQuery, PageRequest, PatientQuery, SlotQuery, SlotRequest
from otv_sdk.signing import Signer, load_key_file

__all__ = ["DEMO_KEY", "KeyFileError", "add_parser", "client_command", "load_signer"]

DEMO_KEY = Path("var/demo-partner.key")
TIMEOUT = 10.0


class KeyFileError(ValueError):
    """The key file is missing or unreadable; the message says which and how to get one."""


def add_parser(commands: Any) -> None:
    client = commands.add_parser(
        "client",
        help="call a gateway as a partner (signed with --key)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = client.add_subparsers(dest="action", required=True)

    def action(name: str, help_text: str) -> argparse.ArgumentParser:
        sub: argparse.ArgumentParser = actions.add_parser(name, help=help_text, description=help_text)
        sub.add_argument(
            "--target",
            default="127.0.0.1:50051",
            help="the gateway's gRPC address, host:port (default 127.0.0.1:50051; `otv demo --listen` sets it)",
        )
        sub.add_argument("--practice", default="demo", help="practice id (default demo)")
        sub.add_argument(
            "--key",
            type=Path,
            default=DEMO_KEY,
            help=f"key file to sign every call with (default {DEMO_KEY}, written by `otv demo`)",
        )
        return sub

    action("calendars", "list the practice's columns and appointment types")
    busy = action("busy", "list busy times per column (no patient data)")
    busy.add_argument("--days", type=int, default=7, help="how many days ahead, from now (default 7)")
    slots = action("slots", "the next bookable slots of an appointment type")
    slots.add_argument("--type", required=True, help="appointment type id, e.g. kontrolle (see `calendars`)")
    slots.add_argument("--days", type=int, default=7, help="how many days ahead, from now (default 7)")
    slots.add_argument("--limit", type=int, default=10, help="at most this many slots (default 10)")
    slots.add_argument(
        "--start-in-days",
        type=int,
        default=0,
        help="look from this many days from now (default 0); the demo takes cancellations up to 24 h before",
    )
    slots.add_argument("--column", action="append", default=[], help="only this column (repeatable)")

    patient = action("patient", "find or create a patient (FindOrCreatePatient); prints the patient id")
    patient.add_argument("--given-name", required=True, help="the patient's given name")
    patient.add_argument("--family-name", required=True, help="the patient's family name")
    patient.add_argument("--birth-date", required=True, type=date.fromisoformat, help="YYYY-MM-DD")
    patient.add_argument("--phone", help="a phone number, e.g. +49 30 1234567")
    patient.add_argument("--email", help="an e-mail address")
    patient.add_argument("--request-id", help="idempotency key (default: a fresh one)")

    hold = action("hold", "hold a slot for a patient (HoldSlot); prints the hold id and its expiry")
    hold.add_argument("--type", required=True, help="appointment type id")
    hold.add_argument("--column", required=True, help="column id, as `slots` prints it")
    hold.add_argument(
        "--start", required=True, type=_instant, help="slot start, ISO 8601 with offset, as `slots` prints it"
    )
    hold.add_argument("--patient", required=True, help="patient id, as `patient` prints it")
    hold.add_argument("--request-id", help="idempotency key (default: a fresh one)")

    confirm = action("confirm", "turn a hold into an appointment (ConfirmHold)")
    confirm.add_argument("--hold", required=True, help="hold id, as `hold` prints it")
    confirm.add_argument("--request-id", help="idempotency key (default: a fresh one)")

    listing = action("appointments", "list the partner's appointments at the practice (ListAppointments)")
    listing.add_argument("--include-cancelled", action="store_true", help="also cancelled ones")
    listing.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")

    cancel = action("cancel", "cancel an appointment (CancelAppointment)")
    cancel.add_argument("--appointment", required=True, help="appointment id, as `confirm` prints it")
    cancel.add_argument("--etag", required=True, help="the appointment's etag, as `confirm` or `appointments` print it")
    cancel.add_argument("--request-id", help="idempotency key (default: a fresh one)")


def _instant(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        value = None
    if value is None or value.tzinfo is None:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a time with a UTC offset, e.g. 2026-12-01T09:00:00+01:00 (as `slots` prints it)"
        )
    return value


def load_signer(path: Path) -> Signer:
    """The signer from a key file, or `KeyFileError` naming the file and what is wrong with it."""
    hint = "`otv demo` writes var/demo-partner.key; `otv keys generate` makes one for your partner"
    try:
        return load_key_file(path)
    except FileNotFoundError:
        raise KeyFileError(f"key file {path} does not exist ({hint}); no call was made") from None
    except OSError as error:
        raise KeyFileError(f"cannot read key file {path}: {error.strerror}; no call was made") from None
    except (ValueError, KeyError, TypeError) as error:
        what = f"field {error}" if isinstance(error, KeyError) else str(error)
        raise KeyFileError(
            f"key file {path} is not an otv key file (JSON with key_id, private_key, audience): {what};"
            " no call was made"
        ) from None


def _appointment_line(appointment: Appointment) -> str:
    return (
        f"appointment {appointment.id}: {appointment.state.value}, {appointment.appointment_type_id} in"
        f" {appointment.column_id} {appointment.interval.start.isoformat()} - {appointment.interval.end.isoformat()},"
        f" patient {appointment.patient_id}, etag {appointment.etag}"
    )


async def client_command(args: argparse.Namespace) -> None:
    signer = load_signer(args.key)  # before connecting: never an unsigned call
    try:
        await _call(args, signer)
    except Unavailable as error:
        raise Unavailable(
            f"{error.message} (is the gateway running at {args.target}? --target host:port names another)"
        ) from None


async def _call(args: argparse.Namespace, signer: Signer) -> None:
    practice = args.practice
    async with PartnerClient.connect(args.target, signer=signer) as client:
        now = datetime.now(UTC).replace(microsecond=0)
        if args.action == "calendars":
            calendar = await client.list_calendars(practice, timeout=TIMEOUT)
            for column in calendar.columns:
                print(f"column {column.id}: {column.display_name} ({column.kind.value})")
            for kind in calendar.appointment_types:
                minutes = int(kind.duration.total_seconds() // 60)
                print(f"type {kind.id}: {kind.display_name}, {minutes} min, columns {', '.join(kind.column_ids)}")
        elif args.action == "busy":
            busy = await client.list_busy_times(
                practice, Interval(now, now + timedelta(days=args.days)), timeout=TIMEOUT
            )
            for busy_column in busy:
                print(f"column {busy_column.column_id}: {len(busy_column.intervals)} busy intervals")
                for interval in list(busy_column.intervals.intervals())[:3]:
                    print(f"  {interval.start.isoformat()} - {interval.end.isoformat()}")
        elif args.action == "slots":
            first = now + timedelta(days=args.start_in_days)
            window = Interval(first, first + timedelta(days=args.days))
            query = SlotQuery(args.type, window, tuple(args.column), PageRequest(args.limit))
            for slot in (await client.find_slots(practice, query, timeout=TIMEOUT)).items:
                print(f"{slot.column_id}: {slot.start.isoformat()} - {slot.end.isoformat()}")
        elif args.action == "patient":
            contacts = []
            if args.phone:
                contacts.append(Contact(ContactKind.PHONE, args.phone))
            if args.email:
                contacts.append(Contact(ContactKind.EMAIL, args.email))
            person = PatientQuery(args.given_name, args.family_name, args.birth_date, tuple(contacts))
            patient, outcome = await client.find_or_create_patient(
                practice, person, request_id=args.request_id, timeout=TIMEOUT
            )
            print(f"patient {patient.id}: {outcome.value}")
        elif args.action == "hold":
            wanted = SlotRequest(args.type, args.column, args.start, args.patient)
            hold = await client.hold_slot(practice, wanted, request_id=args.request_id, timeout=TIMEOUT)
            print(
                f"hold {hold.id}: {hold.appointment_type_id} in {hold.column_id}"
                f" {hold.interval.start.isoformat()} - {hold.interval.end.isoformat()},"
                f" expires {hold.expire_time.isoformat()}"
            )
        elif args.action == "confirm":
            print(
                _appointment_line(
                    await client.confirm_hold(practice, args.hold, request_id=args.request_id, timeout=TIMEOUT)
                )
            )
        elif args.action == "appointments":
            listed = AppointmentQuery(PageRequest(args.limit), include_cancelled=args.include_cancelled)
            page = await client.list_appointments(practice, listed, timeout=TIMEOUT)
            for appointment in page.items:
                print(_appointment_line(appointment))
            if not page.items:
                print("no appointments")
        else:
            appointment = await client.cancel_appointment(
                practice, args.appointment, args.etag, request_id=args.request_id, timeout=TIMEOUT
            )
            print(_appointment_line(appointment))
