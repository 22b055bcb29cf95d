"""gRPC servicers for the four services (and the sandbox), assembled over any way of finding a
practice's adapter: the reader and writer have modules of their own (reader_servicer.py,
writer_servicer.py); patient lookup, consent and the sandbox, being small, are here.

Everything a servicer shares (identity, adapter resolution, deadlines, failures to statuses) is in
servicer_base.py, re-exported here for those who import it from this module.
"""

from __future__ import annotations

from typing import Any, TypeAlias

import grpc

from otv.v1 import (
    consent_service_pb2,
    consent_service_pb2_grpc,
    patient_lookup_service_pb2,
    patient_lookup_service_pb2_grpc,
    reader_service_pb2,
    reader_service_pb2_grpc,
    sandbox_service_pb2,
    sandbox_service_pb2_grpc,
    writer_service_pb2,
    writer_service_pb2_grpc,
)
from otv_sdk import conversion as cv
from otv_sdk.limits import MAX_CONTACTS
from otv_sdk.ports import (
    CallContext,
    ConsentPort,
    PageRequest,
    PatientLookupPort,
    PatientQuery,
)
from otv_sdk.reader_servicer import ReaderServicer
from otv_sdk.servicer_base import (
    AdapterResolver,
    Identify,
    ServicerBase,
    abort_for,
    deadline_of,
    need_port,
    validate_request_id,
)
from otv_sdk.writer_servicer import WriterServicer

__all__ = [
    "AdapterResolver",
    "Identify",
    "ServicerBase",
    "abort_for",
    "add_sandbox_servicer",
    "add_servicers",
    "deadline_of",
    "validate_request_id",
]


_ServicerContext: TypeAlias = grpc.aio.ServicerContext[Any, Any]


class PatientLookupServicer(ServicerBase, patient_lookup_service_pb2_grpc.PatientLookupServiceServicer):
    async def _lookup(self, practice_id: str, ctx: CallContext) -> PatientLookupPort:
        return need_port((await self._adapter(practice_id, ctx, "parent")).patient_lookup, "patient lookup")

    async def FindOrCreatePatient(
        self, request: patient_lookup_service_pb2.FindOrCreatePatientRequest, context: _ServicerContext
    ) -> patient_lookup_service_pb2.FindOrCreatePatientResponse:
        async def handle(ctx: CallContext) -> patient_lookup_service_pb2.FindOrCreatePatientResponse:
            practice_id = cv.practice_from_parent(request.parent)
            query = PatientQuery(
                given_name=cv.name_part(request.given_name, "given_name"),
                family_name=cv.name_part(request.family_name, "family_name"),
                birth_date=cv.birth_date_from_proto(request, "birth_date", "birth_date"),
                contacts=cv.contacts_from_proto(request.contacts, limit=MAX_CONTACTS),
                gender=cv.gender_from_proto(request.gender, "gender"),
                address=cv.address_from_proto(request, "address", "address"),
            )
            patient, outcome = await (await self._lookup(practice_id, ctx)).find_or_create_patient(ctx, query)
            return patient_lookup_service_pb2.FindOrCreatePatientResponse(
                patient=cv.patient_to_proto(practice_id, patient), outcome=cv.match_outcome_to_proto(outcome)
            )

        return await self._run(context, "FindOrCreatePatient", handle, request.request_id)

    async def ListSharedPatients(
        self, request: patient_lookup_service_pb2.ListSharedPatientsRequest, context: _ServicerContext
    ) -> patient_lookup_service_pb2.ListSharedPatientsResponse:
        async def handle(ctx: CallContext) -> patient_lookup_service_pb2.ListSharedPatientsResponse:
            practice_id = cv.practice_from_parent(request.parent)
            page_request = PageRequest(
                cv.page_size_from_proto(request.page_size), cv.token_from_proto(request.page_token, "page_token")
            )
            page = await (await self._lookup(practice_id, ctx)).list_shared_patients(ctx, page_request)
            return patient_lookup_service_pb2.ListSharedPatientsResponse(
                patients=[cv.patient_to_proto(practice_id, p) for p in page.items],
                next_page_token=page.next_page_token,
            )

        return await self._run(context, "ListSharedPatients", handle)


class ConsentServicer(ServicerBase, consent_service_pb2_grpc.ConsentServiceServicer):
    async def _consent(self, practice_id: str, ctx: CallContext) -> ConsentPort:
        return need_port((await self._adapter(practice_id, ctx, "name")).consent, "consent records")

    async def GetConsent(
        self, request: consent_service_pb2.GetConsentRequest, context: _ServicerContext
    ) -> consent_service_pb2.GetConsentResponse:
        async def handle(ctx: CallContext) -> consent_service_pb2.GetConsentResponse:
            practice_id, patient_id = cv.consent_name_parts(request.name)
            consent = await (await self._consent(practice_id, ctx)).get_consent(ctx, patient_id)
            return consent_service_pb2.GetConsentResponse(consent=cv.consent_to_proto(practice_id, consent))

        return await self._run(context, "GetConsent", handle)

    async def RecordConsent(
        self, request: consent_service_pb2.RecordConsentRequest, context: _ServicerContext
    ) -> consent_service_pb2.RecordConsentResponse:
        async def handle(ctx: CallContext) -> consent_service_pb2.RecordConsentResponse:
            practice_id, patient_id = cv.consent_name_parts(request.name)
            state = cv.consent_state_from_proto(request.state, "state")
            evidence = cv.evidence_from_proto(request, "evidence", "evidence")
            port = await self._consent(practice_id, ctx)
            consent = await port.record_consent(ctx, patient_id, state, evidence)
            return consent_service_pb2.RecordConsentResponse(consent=cv.consent_to_proto(practice_id, consent))

        return await self._run(context, "RecordConsent", handle, request.request_id)


class SandboxServicer(ServicerBase, sandbox_service_pb2_grpc.SandboxServiceServicer):
    """Served by adapter servers only (see sandbox_service.proto), never by the gateway."""

    async def LoadScenario(
        self, request: sandbox_service_pb2.LoadScenarioRequest, context: _ServicerContext
    ) -> sandbox_service_pb2.LoadScenarioResponse:
        async def handle(ctx: CallContext) -> sandbox_service_pb2.LoadScenarioResponse:
            practice_id = cv.practice_from_parent(request.name, "name")
            scenario = cv.scenario_from_proto(practice_id, request.scenario)
            port = need_port((await self._adapter(practice_id, ctx, "name")).sandbox, "a sandbox")
            await port.load_scenario(ctx, scenario)
            return sandbox_service_pb2.LoadScenarioResponse()

        return await self._run(context, "LoadScenario", handle, request.request_id)

    async def ResetSandbox(
        self, request: sandbox_service_pb2.ResetSandboxRequest, context: _ServicerContext
    ) -> sandbox_service_pb2.ResetSandboxResponse:
        async def handle(ctx: CallContext) -> sandbox_service_pb2.ResetSandboxResponse:
            practice_id = cv.practice_from_parent(request.name, "name")
            port = need_port((await self._adapter(practice_id, ctx, "name")).sandbox, "a sandbox")
            await port.reset(ctx)
            return sandbox_service_pb2.ResetSandboxResponse()

        return await self._run(context, "ResetSandbox", handle, request.request_id)


def add_sandbox_servicer(server: grpc.aio.Server, resolver: AdapterResolver, identify: Identify) -> str:
    sandbox_service_pb2_grpc.add_SandboxServiceServicer_to_server(SandboxServicer(resolver, identify), server)
    return sandbox_service_pb2.DESCRIPTOR.services_by_name["SandboxService"].full_name


def add_servicers(server: grpc.aio.Server, resolver: AdapterResolver, identify: Identify) -> list[str]:
    """Register the four services on server; return their full names (for health and reflection)."""
    reader_service_pb2_grpc.add_ReaderServiceServicer_to_server(ReaderServicer(resolver, identify), server)
    writer_service_pb2_grpc.add_WriterServiceServicer_to_server(WriterServicer(resolver, identify), server)
    patient_lookup_service_pb2_grpc.add_PatientLookupServiceServicer_to_server(
        PatientLookupServicer(resolver, identify), server
    )
    consent_service_pb2_grpc.add_ConsentServiceServicer_to_server(ConsentServicer(resolver, identify), server)
    return [
        reader_service_pb2.DESCRIPTOR.services_by_name["ReaderService"].full_name,
        writer_service_pb2.DESCRIPTOR.services_by_name["WriterService"].full_name,
        patient_lookup_service_pb2.DESCRIPTOR.services_by_name["PatientLookupService"].full_name,
        consent_service_pb2.DESCRIPTOR.services_by_name["ConsentService"].full_name,
    ]
