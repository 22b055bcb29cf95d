"""ConsentService over a PVS's consent records: a partner's reads and writes become the PVS's.

Who may record what (a partner only a grant, with evidence) and that a denied patient is invisible
are enforced around this by `privacy.py`; here a partner's recording is stored as the partner's.
"""

from __future__ import annotations

from otv_sdk.models import Consent, ConsentActor, ConsentEvidence, ConsentState
from otv_sdk.ports import CallContext, ConsentDataPort, ConsentPort

__all__ = ["RecordedConsent"]


class RecordedConsent(ConsentPort):
    def __init__(self, data: ConsentDataPort) -> None:
        self._data = data

    async def get_consent(self, ctx: CallContext, patient_id: str) -> Consent:
        return await self._data.read_consent(ctx, patient_id)

    async def record_consent(
        self, ctx: CallContext, patient_id: str, state: ConsentState, evidence: ConsentEvidence | None
    ) -> Consent:
        return await self._data.write_consent(ctx, patient_id, state, evidence, ConsentActor.PARTNER)
