"""The requirements the suite checks, by stable id. docs/conformance.md lists the same ids.

Each test names exactly one requirement; a requirement may be checked by several tests.
"""

from __future__ import annotations

__all__ = ["REQUIREMENTS"]

REQUIREMENTS: dict[str, str] = {
    "RD-1": "GetPractice names the practice, its time zone and what the adapter supports.",
    "RD-2": (
        "ListCalendars lists every column, practitioner, room, appointment type, group and booking area"
        " as the PVS has them."
    ),
    "RD-3": "Working hours apply weekly hours, shifts and closed days, exactly, in the practice's wall-clock time.",
    "RD-4": (
        "Wall-clock rules are exact on daylight-saving days (a 01:00-05:00 span lasts 3 h in spring and 5 h in autumn)."
    ),
    "RD-5": "Absences are listed with their true extent, also when they span several days.",
    "RD-6": (
        "Busy times contain every appointment and reservation, including multi-day reservations, clipped to the window."
    ),
    "RD-7": "No reader response carries patient data.",
    "RD-8": "Free time is working time minus absences and busy time.",
    "RD-9": "Slots lie in free time, in the type's columns, respect duration, buffer, lead time and booking areas.",
    "RD-10": (
        "Every start the rules allow is offered, for every appointment type in every column it allows (grid, lead"
        " time, duration and buffer in free time, booking areas)."
    ),
    "RD-11": "Windows of up to 24 months are served; longer ones are refused with INVALID_ARGUMENT.",
    "RD-12": "Reads of the scenario's whole window answer within the stated latency budget.",
    "WR-1": "A booked appointment is written into the PVS calendar and shows as busy time.",
    "WR-2": "A hold blocks the slot for others until it is confirmed or released.",
    "WR-3": "Of concurrent bookings of one slot exactly one wins; the others get ABORTED or FAILED_PRECONDITION.",
    "WR-4": "A retried booking (same request_id) returns the first result and writes once.",
    "WR-5": "A cancelled appointment leaves the PVS calendar and its time is free again.",
    "WR-6": "A rescheduled appointment leaves its old time and occupies the new one.",
    "PV-1": "The PVS writes an entry at most once per reference, however often the write is repeated.",
    "PV-2": "A write into time that is no longer free is entered as an extra appointment (Zusatztermin), never lost.",
    "PV-3": "Deleting an entry twice is harmless: the second delete finds nothing.",
    "PV-4": "Working-time rules are read by overlap: a shift that began before the window still applies in it.",
    "PV-5": "A patient creation repeated with the gateway's request id creates nothing more.",
    "PV-6": (
        "A write is stored exactly as asked (start, end, column) in both UTC offsets of the practice's zone, and"
        " flagged as extra only when it overlaps."
    ),
    "PV-7": "A delete removes exactly its entry, regular or extra; overlapping neighbours stay.",
    "PV-8": "A created patient is read back by birth date with every field (names, birth date, contacts, origin).",
    "PV-9": "A matched patient's stored record is never changed by the match (names, birth date, contacts).",
    "PV-10": (
        "An adapter that announces its changes announces every write and delete, regular or extra, with column"
        " and exact interval, on its outbox in-process and on WatchDataChanges remotely."
    ),
    "PV-11": "The sandbox reset leaves nothing: no calendar entries, no patients, none shared.",
    "PV-12": (
        "A write is stored with what the contract carries for it: appointment type, patient, reference, the"
        " writing partner as its source and the online category; its delete returns it so, whoever deletes it."
    ),
    "PV-13": "An idle WatchDataChanges stream carries a heartbeat at least every 20 s and stays open.",
    "PA-1": "An existing patient is found by name and birth date, and not created again.",
    "PA-2": "Names match after normalisation (case, umlauts, hyphens, white space).",
    "PA-3": "Namesakes with the same birth date are told apart by their contact data.",
    "PA-4": "A patient on file without a full birth date is never matched.",
    "PA-5": "An inactive patient record is never matched.",
    "PA-6": "Concurrent and repeated find-or-create requests for one new person create one patient.",
    "CO-1": "Consent is open until recorded; a partner can record a grant with evidence and read it back.",
    "CO-2": "A patient who denied consent for a partner is invisible to that partner in every service.",
    "CO-3": "Consent is per partner: one partner's grant is not another's.",
    "CO-4": "Only patients who granted consent are listed as shared.",
    "CO-5": (
        "Every consent state written for a partner reads back as written, with evidence and actor; others stay open."
    ),
    "RB-1": "Malformed requests get INVALID_ARGUMENT naming the field.",
    "RB-2": "Requests for things that do not exist get NOT_FOUND or INVALID_ARGUMENT, never INTERNAL.",
}
