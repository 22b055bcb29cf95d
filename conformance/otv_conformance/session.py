"""What a running case works with: the placed scenario, two signed partners, the adapter's own ports.

Helpers here turn answers into the plain spans of `expectations.py` so checks compare like with like.
"""

from __future__ import annotations

import uuid
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import grpc

from otv_conformance.change_watch import ChangeWatch, watch_outbox, watch_stream
from otv_conformance.expectations import Spans, normalize
from otv_conformance.scenarios import PlacedScenario
from otv_sdk.client import PartnerClient
from otv_sdk.models import Capability, ColumnIntervals, Interval, Patient, Slot
from otv_sdk.ports import Adapter, CallContext, MatchOutcome, PageRequest, PatientQuery, SlotQuery

__all__ = ["Session"]


def _spans(items: list[ColumnIntervals], column_id: str) -> Spans:
    pairs: Spans = []
    for item in items:
        if item.column_id == column_id:
            pairs.extend(item.intervals.pairs())
    return pairs


@dataclass(slots=True)
class Session:
    placed: PlacedScenario
    practice_id: str
    partner_a: str
    partner_b: str
    a: PartnerClient  # signed as partner A
    b: PartnerClient  # signed as partner B
    channel_a: grpc.aio.Channel  # raw channel signed as partner A, for requests no typed client builds
    adapter: Adapter  # the adapter itself, as the gateway reaches it (PVS-contract checks)
    capabilities: frozenset[Capability]
    latency_budget_ms: float
    transport: str = "in_process"  # or "remote": what the contract carries differs (change watch, deletes)
    # A channel of the suite's own to the remote adapter server and the practice there, for what the
    # gateway consumes itself (the WatchDataChanges stream); None in-process.
    data_channel: grpc.aio.Channel | None = None
    remote_practice: str = ""

    # --- time --------------------------------------------------------------------------------

    def days(self, first: date, count: int) -> Interval:
        """Local days [first, first + count) as a UTC interval."""
        return Interval(self.placed.local_day_start(first), self.placed.local_day_start(first + timedelta(days=count)))

    def day(self, text: str) -> date:
        return self.placed.anchors.day(text)

    def at(self, text: str) -> datetime:
        return self.placed.anchors.instant(text, self.placed.tz)

    # --- reads ---------------------------------------------------------------------------------

    async def busy(self, column_id: str, window: Interval) -> Spans:
        return _spans(await self.a.list_busy_times(self.practice_id, window, [column_id]), column_id)

    async def free(self, column_id: str, window: Interval) -> Spans:
        return normalize(_spans(await self.a.get_free_time(self.practice_id, window, [column_id]), column_id))

    async def working(self, column_id: str, window: Interval) -> Spans:
        return normalize(_spans(await self.a.list_working_hours(self.practice_id, window, [column_id]), column_id))

    async def slots(self, type_id: str, window: Interval, columns: tuple[str, ...] = ()) -> list[Slot]:
        found: list[Slot] = []
        token = ""
        while True:
            page = await self.a.find_slots(
                self.practice_id, SlotQuery(type_id, window, columns, PageRequest(500, token))
            )
            found.extend(page.items)
            token = page.next_page_token
            if not token:
                return found

    async def pvs_busy(self, column_id: str, window: Interval) -> Spans:
        """Busy time as the PVS itself has it, read through the adapter without the gateway's claims."""
        data = self.adapter.calendar
        assert data is not None, "a certified practice serves its calendar"
        return _spans(await data.list_busy_times(self.pvs_context(), window, [column_id]), column_id)

    async def slots_page(self, type_id: str, window: Interval) -> list[Slot]:
        page = await self.a.find_slots(self.practice_id, SlotQuery(type_id, window, (), PageRequest(100)))
        return list(page.items)

    async def first_slot(self, type_id: str, window: Interval, column_id: str) -> Slot:
        from otv_conformance.cases import CheckFailed

        page = await self.a.find_slots(self.practice_id, SlotQuery(type_id, window, (column_id,), PageRequest(1)))
        if not page.items:
            raise CheckFailed(f"no slot for {type_id} in {column_id} between {window.start} and {window.end}")
        return page.items[0]

    # --- patients ------------------------------------------------------------------------------

    def new_person(self, given: str = "Neu") -> PatientQuery:
        """A person the practice has never seen, unique to this run."""
        token = "".join(c for c in uuid.uuid4().hex if c.isalpha())[:6].title() or "Neu"
        return PatientQuery(given, f"Neupatient-{self.placed.values.tag}{token}", date(1991, 4, 1))

    async def lookup(
        self, query: PatientQuery, *, partner: PartnerClient | None = None, request_id: str | None = None
    ) -> tuple[Patient, MatchOutcome]:
        client = partner or self.a
        return await client.find_or_create_patient(self.practice_id, query, request_id=request_id or str(uuid.uuid4()))

    async def new_patient_id(self) -> str:
        patient, _ = await self.lookup(self.new_person())
        return patient.id

    @property
    def remote(self) -> bool:
        return self.transport == "remote"

    def watch_changes(self) -> AbstractAsyncContextManager[ChangeWatch] | None:
        """Follow what the adapter announces, through its transport; None if it announces nothing
        (no outbox in-process, no DATA_CAPABILITY_CHANGES remotely)."""
        if self.adapter.changes is not None:
            return watch_outbox(self.adapter.changes)
        if self.data_channel is not None and Capability.CHANGE_FEED in self.adapter.extra_capabilities:
            return watch_stream(self.data_channel, self.remote_practice)
        return None

    def pvs_context(self) -> CallContext:
        return CallContext(partner_id=self.partner_a, request_id=str(uuid.uuid4()))
