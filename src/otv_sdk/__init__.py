"""The otv SDK: what a PVS vendor needs to connect a practice, and what a partner needs to call it.

- `otv_sdk.models`: typed domain models (no protobuf).
- `otv_sdk.ports`: the adapter interface, one port per service.
- `otv_sdk.client`: the partner client.
- `otv_sdk.adapter_server`: serve an adapter to a remote gateway.
- `otv_sdk.reference`: the reference adapter (a demo practice in SQLite) to copy from.
"""

from otv_sdk.client import PartnerClient
from otv_sdk.errors import (
    Aborted,
    DeadlineExceeded,
    FailedPrecondition,
    FieldViolation,
    InternalError,
    InvalidArgument,
    NotFound,
    OtvError,
    PermissionDenied,
    Unauthenticated,
    Unavailable,
    Unimplemented,
)
from otv_sdk.ports import (
    Adapter,
    AdapterFactory,
    CallContext,
    ConsentPort,
    PatientLookupPort,
    ReaderPort,
    WriterPort,
)

__all__ = [
    "Aborted",
    "Adapter",
    "AdapterFactory",
    "CallContext",
    "ConsentPort",
    "DeadlineExceeded",
    "FailedPrecondition",
    "FieldViolation",
    "InternalError",
    "InvalidArgument",
    "NotFound",
    "OtvError",
    "PartnerClient",
    "PatientLookupPort",
    "PermissionDenied",
    "ReaderPort",
    "Unauthenticated",
    "Unavailable",
    "Unimplemented",
    "WriterPort",
]
