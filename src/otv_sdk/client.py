"""The partner client: typed calls to an otv gateway, returning domain models.

Errors come back as the `otv_sdk.errors` types, with field violations, so partner code can
`except InvalidArgument as e: e.violations`. Mutating calls take a `request_id`; leave it out and
a fresh one is made, pass your own to retry safely.

The gateway's own remote-adapter transport is built on this client too, so the wire mapping is
written once.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, TypeVar

import grpc

from otv.v1 import (
    consent_service_pb2,
    consent_service_pb2_grpc,
    patient_lookup_service_pb2,
    patient_lookup_service_pb2_grpc,
    patient_pb2,
    reader_service_pb2,
    reader_service_pb2_grpc,
    sandbox_service_pb2,
    sandbox_service_pb2_grpc,
    writer_service_pb2,
    writer_service_pb2_grpc,
)
from otv_sdk import conversion as cv
from otv_sdk.changes import ChangeEvent
from otv_sdk.errors import InternalError, OtvError
from otv_sdk.models import (
    Absence,
    Appointment,
    Calendar,
    ColumnIntervals,
    Consent,
    ConsentEvidence,
    ConsentState,
    Hold,
    Interval,
    Patient,
    Practice,
    Slot,
)
from otv_sdk.ports import AppointmentQuery, MatchOutcome, Page, PageRequest, PatientQuery, SlotQuery, SlotRequest
from otv_sdk.resources import format_name
from otv_sdk.scenario import Scenario
from otv_sdk.session_signer import SessionSigner, is_session_unknown
from otv_sdk.signing import Signer
from otv_sdk.status import error_from_rpc_error

__all__ = ["Metadata", "PartnerClient", "signing_interceptors"]

T = TypeVar("T")
R = TypeVar("R")
Metadata = Sequence[tuple[str, str]]


class _Signing:
    """Adds fresh signature headers to every call, so every attempt has its own nonce."""

    def __init__(self, signer: Signer) -> None:
        self._signer = signer

    def _signed(self, details: grpc.aio.ClientCallDetails, request: Any) -> grpc.aio.ClientCallDetails:
        method = details.method.decode() if isinstance(details.method, bytes) else details.method
        metadata = grpc.aio.Metadata(
            *(details.metadata or ()), *self._signer.headers(method, request.SerializeToString())
        )
        return grpc.aio.ClientCallDetails(
            details.method, details.timeout, metadata, details.credentials, details.wait_for_ready
        )


class _SignUnary(_Signing, grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        return await continuation(self._signed(client_call_details, request), request)


class _SignStream(_Signing, grpc.aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        return await continuation(self._signed(client_call_details, request), request)


def signing_interceptors(signer: Signer) -> list[grpc.aio.ClientInterceptor]:
    """Interceptors that sign every call of a raw channel (grpc.aio wants one object per call type).

    `PartnerClient` signs its requests itself, which is markedly cheaper than aio interceptors.
    """
    return [_SignUnary(signer), _SignStream(signer)]


# Transient failures are retried: every request is safe to repeat (mutations carry a request_id).
_RETRIES = (0.1, 0.4)


class PartnerClient:
    """Async client for the four otv services on one channel.

    With a `signer`, calls are authenticated with otv-session-v1 (a session opened with the key,
    then an HMAC per call); `sessions=False` signs every call with otv-ed25519-v1 instead, for
    gateways that predate sessions."""

    def __init__(self, channel: grpc.aio.Channel, signer: Signer | None = None, *, sessions: bool = True) -> None:
        self._channel = channel
        self._signer: Signer | SessionSigner | None = (
            SessionSigner(signer, channel) if signer is not None and sessions else signer
        )
        self._reader = reader_service_pb2_grpc.ReaderServiceStub(channel)
        self._writer = writer_service_pb2_grpc.WriterServiceStub(channel)
        self._patients = patient_lookup_service_pb2_grpc.PatientLookupServiceStub(channel)
        self._consent = consent_service_pb2_grpc.ConsentServiceStub(channel)
        self._sandbox = sandbox_service_pb2_grpc.SandboxServiceStub(channel)
        # Full method names for signing, by stub method (grpc does not expose them on the callables).
        self._methods: dict[int, str] = {}
        for stub, file in (
            (self._reader, reader_service_pb2),
            (self._writer, writer_service_pb2),
            (self._patients, patient_lookup_service_pb2),
            (self._consent, consent_service_pb2),
            (self._sandbox, sandbox_service_pb2),
        ):
            (service,) = file.DESCRIPTOR.services_by_name.values()
            for method in service.methods:
                self._methods[id(getattr(stub, method.name))] = f"/{service.full_name}/{method.name}"

    @classmethod
    def connect(
        cls,
        target: str,
        *,
        credentials: grpc.ChannelCredentials | None = None,
        interceptors: Sequence[grpc.aio.ClientInterceptor] = (),
        signer: Signer | None = None,
        sessions: bool = True,
    ) -> PartnerClient:
        """Open a channel to target ("host:port"); plaintext unless credentials are given.

        With a `signer`, every call is authenticated, as a gateway requires (see the class).
        """
        if credentials is None:
            channel = grpc.aio.insecure_channel(target, interceptors=list(interceptors))
        else:
            channel = grpc.aio.secure_channel(target, credentials, interceptors=list(interceptors))
        return cls(channel, signer, sessions=sessions)

    async def _auth_headers(self, method: str, body: bytes, metadata: Metadata | None) -> Metadata | None:
        """The caller's metadata with fresh authentication headers: every attempt gets its own."""
        if self._signer is None:
            return metadata
        if isinstance(self._signer, SessionSigner):
            return [*(metadata or ()), *(await self._signer.headers(method, body))]
        return [*(metadata or ()), *self._signer.headers(method, body)]

    def _session_lost(self, error: grpc.aio.AioRpcError, renewed: bool) -> bool:
        """A session the gateway no longer knows is dropped, and the call sent once more (it did nothing)."""
        if renewed or not isinstance(self._signer, SessionSigner) or not is_session_unknown(error):
            return False
        self._signer.forget()
        return True

    async def close(self) -> None:
        await self._channel.close()

    async def __aenter__(self) -> PartnerClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def _call(
        self,
        method: Callable[..., Awaitable[R]],
        request: Any,
        parse: Callable[[R], T],
        timeout: float | None,
        metadata: Metadata | None,
    ) -> T:
        body = request.SerializeToString() if self._signer is not None else b""
        name = self._methods[id(method)]
        pauses, renewed = list(_RETRIES), False
        while True:
            attempt = await self._auth_headers(name, body, metadata)
            try:
                response = await method(request, timeout=timeout, metadata=attempt)
                break
            except grpc.aio.AioRpcError as error:
                if self._session_lost(error, renewed):
                    renewed = True
                    continue
                if error.code() is not grpc.StatusCode.UNAVAILABLE or not pauses:
                    raise error_from_rpc_error(error) from None
                await asyncio.sleep(pauses.pop(0))  # the same request again: same request_id, fresh signature
        try:
            return parse(response)
        except (OtvError, ValueError) as error:
            raise InternalError(f"the server sent a malformed response: {error}") from error

    # --- reader ---------------------------------------------------------------------------------

    async def get_practice(
        self, practice_id: str, *, timeout: float | None = None, metadata: Metadata | None = None
    ) -> Practice:
        request = reader_service_pb2.GetPracticeRequest(name=format_name(practice_id))
        return await self._call(
            self._reader.GetPractice, request, lambda r: cv.practice_from_proto(r.practice), timeout, metadata
        )

    async def list_calendars(
        self, practice_id: str, *, timeout: float | None = None, metadata: Metadata | None = None
    ) -> Calendar:
        request = reader_service_pb2.ListCalendarsRequest(parent=format_name(practice_id))
        return await self._call(
            self._reader.ListCalendars,
            request,
            lambda r: cv.calendar_from_proto(practice_id, r),
            timeout,
            metadata,
        )

    def _window_request(self, factory: Any, practice_id: str, window: Interval, column_ids: Sequence[str]) -> Any:
        return factory(
            parent=format_name(practice_id),
            window=cv.interval_to_proto(window),
            columns=[format_name(practice_id, "columns", c) for c in column_ids],
        )

    async def _packed(
        self,
        method: Callable[..., Awaitable[Any]],
        request: Any,
        field: str,
        practice_id: str,
        timeout: float | None,
        metadata: Metadata | None,
    ) -> list[ColumnIntervals]:
        def parse(response: Any) -> list[ColumnIntervals]:
            return _unpacked(response, field, practice_id)

        return await self._call(method, request, parse, timeout, metadata)

    async def list_working_hours(
        self,
        practice_id: str,
        window: Interval,
        column_ids: Sequence[str] = (),
        *,
        timeout: float | None = None,
        metadata: Metadata | None = None,
    ) -> list[ColumnIntervals]:
        """Effective working time per column (all columns if none are named)."""
        request = self._window_request(reader_service_pb2.ListWorkingHoursRequest, practice_id, window, column_ids)
        return await self._packed(
            self._reader.ListWorkingHours, request, "working_hours", practice_id, timeout, metadata
        )

    async def list_busy_times(
        self,
        practice_id: str,
        window: Interval,
        column_ids: Sequence[str] = (),
        *,
        timeout: float | None = None,
        metadata: Metadata | None = None,
    ) -> list[ColumnIntervals]:
        """Busy time per column, clipped to window; never patient data."""
        busy, _ = await self.busy_snapshot(practice_id, window, column_ids, timeout=timeout, metadata=metadata)
        return busy

    async def busy_snapshot(
        self,
        practice_id: str,
        window: Interval,
        column_ids: Sequence[str] = (),
        *,
        timeout: float | None = None,
        metadata: Metadata | None = None,
    ) -> tuple[list[ColumnIntervals], str]:
        """Busy time and the change-feed cursor to resume WatchChanges from without missing anything."""
        request = self._window_request(reader_service_pb2.ListBusyTimesRequest, practice_id, window, column_ids)

        def parse(response: reader_service_pb2.ListBusyTimesResponse) -> tuple[list[ColumnIntervals], str]:
            return _unpacked(response, "busy_times", practice_id), response.change_cursor

        return await self._call(self._reader.ListBusyTimes, request, parse, timeout, metadata)

    async def watch_changes(
        self,
        practice_id: str,
        column_ids: Sequence[str] = (),
        cursor: str = "",
        *,
        metadata: Metadata | None = None,
    ) -> AsyncIterator[ChangeEvent]:
        """The practice's changes after `cursor` (empty: from now), then live, with heartbeats.

        Reconnecting is the caller's choice: pass the last event's cursor to resume without loss."""
        request = reader_service_pb2.WatchChangesRequest(
            parent=format_name(practice_id),
            columns=[format_name(practice_id, "columns", c) for c in column_ids],
            cursor=cursor,
        )
        method = self._reader.WatchChanges
        body, renewed = request.SerializeToString(), False
        while True:
            call = method(request, metadata=await self._auth_headers(self._methods[id(method)], body, metadata))
            try:
                async for response in call:
                    yield cv.change_from_proto(practice_id, response)
                return
            except grpc.aio.AioRpcError as error:
                if self._session_lost(error, renewed):  # refused at the start: nothing was received
                    renewed = True
                    continue
                raise error_from_rpc_error(error) from None
            finally:
                call.cancel()

    async def get_free_time(
        self,
        practice_id: str,
        window: Interval,
        column_ids: Sequence[str] = (),
        *,
        timeout: float | None = None,
        metadata: Metadata | None = None,
    ) -> list[ColumnIntervals]:
        """Free time per column: working time minus absences, busy time and valid holds."""
        request = self._window_request(reader_service_pb2.GetFreeTimeRequest, practice_id, window, column_ids)
        return await self._packed(self._reader.GetFreeTime, request, "free_times", practice_id, timeout, metadata)

    async def find_slots(
        self,
        practice_id: str,
        query: SlotQuery,
        *,
        timeout: float | None = None,
        metadata: Metadata | None = None,
    ) -> Page[Slot]:
        """One page of bookable slots; pass `next_page_token` back in `query.page` for the next."""
        request = self._window_request(reader_service_pb2.FindSlotsRequest, practice_id, query.window, query.column_ids)
        request.appointment_type = format_name(practice_id, "appointmentTypes", query.appointment_type_id)
        request.page_size = query.page.page_size
        request.page_token = query.page.page_token

        def parse(r: reader_service_pb2.FindSlotsResponse) -> Page[Slot]:
            return Page(
                [cv.slot_from_proto(practice_id, s, f"slots[{i}]") for i, s in enumerate(r.slots)], r.next_page_token
            )

        return await self._call(self._reader.FindSlots, request, parse, timeout, metadata)

    async def list_absences(
        self,
        practice_id: str,
        window: Interval,
        column_ids: Sequence[str] = (),
        *,
        timeout: float | None = None,
        metadata: Metadata | None = None,
    ) -> list[Absence]:
        request = self._window_request(reader_service_pb2.ListAbsencesRequest, practice_id, window, column_ids)
        return await self._call(
            self._reader.ListAbsences,
            request,
            lambda r: [cv.absence_from_proto(practice_id, a, f"absences[{i}]") for i, a in enumerate(r.absences)],
            timeout,
            metadata,
        )

    # --- writer ---------------------------------------------------------------------------------

    def _slot_fields(self, practice_id: str, slot: SlotRequest) -> dict[str, Any]:
        """The slot, and the patient by resource name or, with `slot.patient_details` (a practice
        whose `takes_patient_details`), by the details the booking form took."""
        fields: dict[str, Any] = {
            "parent": format_name(practice_id),
            "appointment_type": format_name(practice_id, "appointmentTypes", slot.appointment_type_id),
            "column": format_name(practice_id, "columns", slot.column_id),
            "start_time": cv.datetime_to_timestamp(slot.start),
        }
        if slot.patient_id:
            fields["patient"] = format_name(practice_id, "patients", slot.patient_id)
        if slot.patient_details is not None:
            fields["patient_details"] = cv.patient_details_to_proto(slot.patient_details)
        return fields

    async def hold_slot(
        self,
        practice_id: str,
        slot: SlotRequest,
        *,
        request_id: str | None = None,
        timeout: float | None = None,
        metadata: Metadata | None = None,
    ) -> Hold:
        request = writer_service_pb2.HoldSlotRequest(
            request_id=_rid(request_id), **self._slot_fields(practice_id, slot)
        )
        return await self._call(
            self._writer.HoldSlot,
            request,
            lambda r: cv.hold_from_proto(practice_id, r.hold, "hold"),
            timeout,
            metadata,
        )

    async def confirm_hold(
        self,
        practice_id: str,
        hold_id: str,
        *,
        request_id: str | None = None,
        timeout: float | None = None,
        metadata: Metadata | None = None,
    ) -> Appointment:
        request = writer_service_pb2.ConfirmHoldRequest(
            name=format_name(practice_id, "holds", hold_id), request_id=_rid(request_id)
        )
        return await self._call(self._writer.ConfirmHold, request, _appointment(practice_id), timeout, metadata)

    async def release_hold(
        self,
        practice_id: str,
        hold_id: str,
        *,
        request_id: str | None = None,
        timeout: float | None = None,
        metadata: Metadata | None = None,
    ) -> None:
        request = writer_service_pb2.ReleaseHoldRequest(
            name=format_name(practice_id, "holds", hold_id), request_id=_rid(request_id)
        )
        await self._call(self._writer.ReleaseHold, request, lambda r: None, timeout, metadata)

    async def book_appointment(
        self,
        practice_id: str,
        slot: SlotRequest,
        *,
        request_id: str | None = None,
        timeout: float | None = None,
        metadata: Metadata | None = None,
    ) -> Appointment:
        request = writer_service_pb2.BookAppointmentRequest(
            request_id=_rid(request_id), **self._slot_fields(practice_id, slot)
        )
        return await self._call(self._writer.BookAppointment, request, _appointment(practice_id), timeout, metadata)

    async def cancel_appointment(
        self,
        practice_id: str,
        appointment_id: str,
        etag: str,
        *,
        request_id: str | None = None,
        timeout: float | None = None,
        metadata: Metadata | None = None,
    ) -> Appointment:
        request = writer_service_pb2.CancelAppointmentRequest(
            name=format_name(practice_id, "appointments", appointment_id),
            etag=etag,
            request_id=_rid(request_id),
        )
        return await self._call(self._writer.CancelAppointment, request, _appointment(practice_id), timeout, metadata)

    async def reschedule_appointment(
        self,
        practice_id: str,
        appointment_id: str,
        etag: str,
        start: datetime,
        column_id: str | None = None,
        *,
        request_id: str | None = None,
        timeout: float | None = None,
        metadata: Metadata | None = None,
    ) -> Appointment:
        request = writer_service_pb2.RescheduleAppointmentRequest(
            name=format_name(practice_id, "appointments", appointment_id),
            etag=etag,
            start_time=cv.datetime_to_timestamp(start),
            column=format_name(practice_id, "columns", column_id) if column_id else "",
            request_id=_rid(request_id),
        )
        return await self._call(
            self._writer.RescheduleAppointment, request, _appointment(practice_id), timeout, metadata
        )

    async def get_appointment(
        self,
        practice_id: str,
        appointment_id: str,
        *,
        timeout: float | None = None,
        metadata: Metadata | None = None,
    ) -> Appointment:
        request = writer_service_pb2.GetAppointmentRequest(
            name=format_name(practice_id, "appointments", appointment_id)
        )
        return await self._call(self._writer.GetAppointment, request, _appointment(practice_id), timeout, metadata)

    async def list_appointments(
        self,
        practice_id: str,
        query: AppointmentQuery,
        *,
        timeout: float | None = None,
        metadata: Metadata | None = None,
    ) -> Page[Appointment]:
        request = writer_service_pb2.ListAppointmentsRequest(
            parent=format_name(practice_id),
            include_cancelled=query.include_cancelled,
            page_size=query.page.page_size,
            page_token=query.page.page_token,
        )
        if query.start is not None:
            request.start_time.CopyFrom(cv.datetime_to_timestamp(query.start))
        if query.end is not None:
            request.end_time.CopyFrom(cv.datetime_to_timestamp(query.end))

        def parse(r: writer_service_pb2.ListAppointmentsResponse) -> Page[Appointment]:
            items = [
                cv.appointment_from_proto(practice_id, a, f"appointments[{i}]") for i, a in enumerate(r.appointments)
            ]
            return Page(items, r.next_page_token)

        return await self._call(self._writer.ListAppointments, request, parse, timeout, metadata)

    # --- patients and consent -------------------------------------------------------------------

    async def find_or_create_patient(
        self,
        practice_id: str,
        query: PatientQuery,
        *,
        request_id: str | None = None,
        timeout: float | None = None,
        metadata: Metadata | None = None,
    ) -> tuple[Patient, MatchOutcome]:
        request = patient_lookup_service_pb2.FindOrCreatePatientRequest(
            parent=format_name(practice_id),
            request_id=_rid(request_id),
            given_name=query.given_name,
            family_name=query.family_name,
            birth_date=cv.date_to_proto(query.birth_date),
            contacts=[
                patient_pb2.Contact(kind=cv.contact_kind_to_proto(c.kind), value=c.value) for c in query.contacts
            ],
            gender=cv.gender_to_proto(query.gender),
        )
        if query.address is not None:
            request.address.CopyFrom(cv.address_to_proto(query.address))

        def parse(r: patient_lookup_service_pb2.FindOrCreatePatientResponse) -> tuple[Patient, MatchOutcome]:
            return cv.patient_from_proto(practice_id, r.patient, "patient"), cv.match_outcome_from_proto(
                r.outcome, "outcome"
            )

        return await self._call(self._patients.FindOrCreatePatient, request, parse, timeout, metadata)

    async def list_shared_patients(
        self,
        practice_id: str,
        page: PageRequest,
        *,
        timeout: float | None = None,
        metadata: Metadata | None = None,
    ) -> Page[Patient]:
        request = patient_lookup_service_pb2.ListSharedPatientsRequest(
            parent=format_name(practice_id), page_size=page.page_size, page_token=page.page_token
        )

        def parse(r: patient_lookup_service_pb2.ListSharedPatientsResponse) -> Page[Patient]:
            items = [cv.patient_from_proto(practice_id, p, f"patients[{i}]") for i, p in enumerate(r.patients)]
            return Page(items, r.next_page_token)

        return await self._call(self._patients.ListSharedPatients, request, parse, timeout, metadata)

    async def get_consent(
        self,
        practice_id: str,
        patient_id: str,
        *,
        timeout: float | None = None,
        metadata: Metadata | None = None,
    ) -> Consent:
        request = consent_service_pb2.GetConsentRequest(name=cv.consent_name(practice_id, patient_id))
        return await self._call(
            self._consent.GetConsent,
            request,
            lambda r: cv.consent_from_proto(practice_id, r.consent, "consent"),
            timeout,
            metadata,
        )

    async def record_consent(
        self,
        practice_id: str,
        patient_id: str,
        state: ConsentState,
        evidence: ConsentEvidence | None,
        *,
        request_id: str | None = None,
        timeout: float | None = None,
        metadata: Metadata | None = None,
    ) -> Consent:
        request = consent_service_pb2.RecordConsentRequest(
            name=cv.consent_name(practice_id, patient_id),
            request_id=_rid(request_id),
            state=cv.consent_state_to_proto(state),
        )
        if evidence is not None:
            request.evidence.CopyFrom(cv.evidence_to_proto(evidence))
        return await self._call(
            self._consent.RecordConsent,
            request,
            lambda r: cv.consent_from_proto(practice_id, r.consent, "consent"),
            timeout,
            metadata,
        )

    # --- sandbox (adapter servers of certification installations only) -----------------------------

    async def load_scenario(
        self,
        practice_id: str,
        scenario: Scenario,
        *,
        timeout: float | None = None,
        metadata: Metadata | None = None,
    ) -> None:
        request = sandbox_service_pb2.LoadScenarioRequest(
            name=format_name(practice_id),
            scenario=cv.scenario_to_proto(practice_id, scenario),
            request_id=_rid(None),
        )
        await self._call(self._sandbox.LoadScenario, request, lambda r: None, timeout, metadata)

    async def reset_sandbox(
        self, practice_id: str, *, timeout: float | None = None, metadata: Metadata | None = None
    ) -> None:
        request = sandbox_service_pb2.ResetSandboxRequest(name=format_name(practice_id), request_id=_rid(None))
        await self._call(self._sandbox.ResetSandbox, request, lambda r: None, timeout, metadata)


def _unpacked(response: Any, field: str, practice_id: str) -> list[ColumnIntervals]:
    return [
        cv.unpack_intervals(packed, practice_id, f"{field}[{index}]")
        for index, packed in enumerate(getattr(response, field))
    ]


def _rid(request_id: str | None) -> str:
    return request_id or str(uuid.uuid4())


def _appointment(practice_id: str) -> Callable[[Any], Appointment]:
    return lambda r: cv.appointment_from_proto(practice_id, r.appointment, "appointment")
