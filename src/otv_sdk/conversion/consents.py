"""A patient's consent to a partner, with the evidence for the decision.

Sandbox scenarios share the consent state table (`_CONSENT_STATES`).
"""

from __future__ import annotations

from otv.v1 import consent_pb2
from otv_sdk.conversion.instants import datetime_to_timestamp, optional_timestamp, required_timestamp
from otv_sdk.conversion.names import bounded_text, consent_name, consent_name_parts
from otv_sdk.errors import InvalidArgument
from otv_sdk.limits import MAX_TOKEN
from otv_sdk.models import Consent, ConsentActor, ConsentEvidence, ConsentMethod, ConsentState

__all__ = [
    "consent_actor_from_proto",
    "consent_actor_to_proto",
    "consent_from_proto",
    "consent_state_from_proto",
    "consent_state_to_proto",
    "consent_to_proto",
    "evidence_from_proto",
    "evidence_to_proto",
]


_CONSENT_STATES = {
    ConsentState.OPEN: consent_pb2.CONSENT_STATE_OPEN,
    ConsentState.GRANTED: consent_pb2.CONSENT_STATE_GRANTED,
    ConsentState.DENIED: consent_pb2.CONSENT_STATE_DENIED,
}
_CONSENT_STATES_BACK = {v: k for k, v in _CONSENT_STATES.items()}
_CONSENT_METHODS = {
    ConsentMethod.ONLINE_FORM: consent_pb2.CONSENT_METHOD_ONLINE_FORM,
    ConsentMethod.PAPER: consent_pb2.CONSENT_METHOD_PAPER,
    ConsentMethod.VERBAL: consent_pb2.CONSENT_METHOD_VERBAL,
}
_CONSENT_METHODS_BACK = {v: k for k, v in _CONSENT_METHODS.items()}
_CONSENT_ACTORS = {
    ConsentActor.PARTNER: consent_pb2.CONSENT_ACTOR_PARTNER,
    ConsentActor.PRACTICE: consent_pb2.CONSENT_ACTOR_PRACTICE,
}
_CONSENT_ACTORS_BACK = {v: k for k, v in _CONSENT_ACTORS.items()}


def consent_actor_to_proto(actor: ConsentActor) -> consent_pb2.ConsentActor.ValueType:
    return _CONSENT_ACTORS[actor]


def consent_actor_from_proto(value: int, field: str) -> ConsentActor:
    actor: ConsentActor | None = _CONSENT_ACTORS_BACK.get(value)  # type: ignore[call-overload]
    if actor is None:
        raise InvalidArgument.field(field, "must be PARTNER or PRACTICE")
    return actor


def consent_state_from_proto(value: int, field: str) -> ConsentState:
    if value not in _CONSENT_STATES_BACK:
        raise InvalidArgument.field(field, "must be OPEN, GRANTED or DENIED")
    return _CONSENT_STATES_BACK[value]  # type: ignore[index]


def consent_state_to_proto(state: ConsentState) -> consent_pb2.ConsentState.ValueType:
    return _CONSENT_STATES[state]


def evidence_from_proto(parent: object, name: str, field: str) -> ConsentEvidence | None:
    if not parent.HasField(name):  # type: ignore[attr-defined]
        return None
    msg: consent_pb2.ConsentEvidence = getattr(parent, name)
    method = _CONSENT_METHODS_BACK.get(msg.method)
    if method is None:
        raise InvalidArgument.field(f"{field}.method", "is required")
    return ConsentEvidence(
        decide_time=required_timestamp(msg, "decide_time", f"{field}.decide_time"),
        method=method,
        text_version=bounded_text(msg.text_version, f"{field}.text_version", MAX_TOKEN),
    )


def evidence_to_proto(evidence: ConsentEvidence) -> consent_pb2.ConsentEvidence:
    return consent_pb2.ConsentEvidence(
        decide_time=datetime_to_timestamp(evidence.decide_time),
        method=_CONSENT_METHODS[evidence.method],
        text_version=evidence.text_version,
    )


def consent_to_proto(practice_id: str, consent: Consent) -> consent_pb2.Consent:
    msg = consent_pb2.Consent(name=consent_name(practice_id, consent.patient_id), state=_CONSENT_STATES[consent.state])
    if consent.evidence is not None:
        msg.evidence.CopyFrom(evidence_to_proto(consent.evidence))
    if consent.set_by is not None:
        msg.set_by = _CONSENT_ACTORS[consent.set_by]
    if consent.update_time is not None:
        msg.update_time.CopyFrom(datetime_to_timestamp(consent.update_time))
    return msg


def consent_from_proto(practice_id: str, msg: consent_pb2.Consent, field: str) -> Consent:
    msg_practice, patient_id = consent_name_parts(msg.name, f"{field}.name")
    if msg_practice != practice_id:
        raise InvalidArgument.field(f"{field}.name", "belongs to another practice")
    return Consent(
        patient_id=patient_id,
        state=consent_state_from_proto(msg.state, f"{field}.state"),
        evidence=evidence_from_proto(msg, "evidence", f"{field}.evidence"),
        set_by=_CONSENT_ACTORS_BACK.get(msg.set_by),
        update_time=optional_timestamp(msg, "update_time", f"{field}.update_time"),
    )
