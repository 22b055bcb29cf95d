"""One partner floods the gateway with the largest requests the limits allow; do the others notice?

    python benchmarks/bench_flood.py [--seconds 20] [--rounds 3] [--quiet-partners 3] [--quiet-rate 20]
        [--concurrency 64] [--flooder-rate PER_SECOND[:BURST]] [--kinds NAME,...] [--json PATH]
        [--scheme session|ed25519] [--loop-steps] [--gateway-profile PATH] [--slow-callback-ms MS]
        [--switch-interval-ms MS] [--no-gc-freeze] [--step-stacks]

Issue 15's acceptance point: while one partner sends requests at the maximum allowed sizes as fast
as it can, the other partners' p99 latency for ListCalendars stays within 2x of its value without
that load.

One signed gateway, in its own process, serves the availability benchmark's practice (scenario.py:
20 columns, 730 days, ~30,000 appointments) in-process through the reference adapter, with its
state in a SQLite file. Four partners are registered, each with its own key: a flooder and (by
default) three quiet partners. Partners authenticate as the partner client does by default, with an
otv-session-v1 session per channel (--scheme ed25519: a signature per call, whose nonce the gateway
stores, as in the figures before 2026-11-30 23:00). Two more processes generate load, so neither measures the other's
client CPU: the quiet process calls ListCalendars for each quiet partner on its own channel in an
open loop, at a fixed interval (20 calls/s each by default, staggered), and times each call from
the moment it was due, so a late start counts against the gateway (no coordinated omission). The
flooder process keeps --concurrency calls in flight and starts the next one the moment one ends,
whatever the answer (it ignores RetryInfo), round robin over the costliest requests the limits
allow, all over a 24-month window naming every column:

  free_time_24m      GetFreeTime
  busy_times_24m     ListBusyTimes
  find_slots_24m     FindSlots, page_size 1000 (the largest page)
  patient_10x254     FindOrCreatePatient: 200-character given and family names, 10 contacts of 254
                     characters (5 e-mail addresses, 5 phone numbers padded with separators), a
                     fresh request_id and fresh names every call (a new patient each time)
  busy_times_64k     ListBusyTimes padded with an unknown field to 65,500 bytes (the limit is
                     65,536): a valid request whose body costs the most to receive, hash and parse
  columns_64_refused ListBusyTimes naming 64 columns (the limit) of 128-character ids that do not
                     exist, padded to 65,500 bytes: refused with INVALID_ARGUMENT after the
                     signature, the admission and the calendar read

Phases alternate within each round: A (baseline, quiet load only) then B (the same quiet load while
the flooder runs; it starts 1.5 s before the quiet measurement and stops once every quiet call of
the phase is answered). Per phase: the quiet calls' p50/p90/p99 (all quiet partners pooled); the
flooder's outcomes by status code; the CPU each process spent (all three share the machine's
cores: on 2 cores the load generators' own work competes with the gateway, though here they use
little); and, sampled in the gateway process every 10 ms, how late its event loop woke and how many
jobs waited for asyncio.to_thread's default executor (the admissions' store transactions and the
reference adapter's SQLite reads both go through it). The verdict compares the median of the
per-round p99s of B with that of A; target: at most 2x.

--loop-steps counts, in the gateway, the steps of its event loop (a callback, one step of a call's
task) that took 1 ms or more of the loop thread's CPU time, per phase and by task (gRPC names a
call's task after its method): what a quiet call can be stuck behind. Thread CPU time rather than
wall time, so other work on the machine hardly changes it; it costs the loop a few microseconds a
step.

The gateway uses the configured default rate limit unless --flooder-rate gives the flooder its own
(`gateway.partner_rate_limits`); --kinds floods with some of the requests only. For diagnosis:
--gateway-profile writes cProfile statistics of the gateway's event-loop thread during the flood
phases; --slow-callback-ms runs the gateway's loop in asyncio debug mode and lists, by task, the
steps that held it longer (both slow the gateway: do not read the latency figures of such a run);
--switch-interval-ms sets the gateway process's GIL switch interval (sys.setswitchinterval; Python's
default is 5 ms), to see how much the loop waits for the GIL while worker threads (the reference
PVS's SQLite reads, admissions) hold it; --gc-freeze calls gc.freeze() in the gateway once it has
started, so the full garbage collections the flood's allocations bring about (~50 ms each on this
machine, visible with --loop-steps) no longer scan the objects every gateway holds from its start.

Measured on the 2-core development machine (2026-11-30): before the per-partner limits, three runs
with the defaults gave quiet ListCalendars p99 14.1 / 20.5 / 22.6 ms without the flood and 4775 /
3773 / 5333 ms with it (339x / 184x / 236x). With calls at once and a CPU share per partner (default
0.05 of a core): 1.53x / 2.42x / 2.05x in three runs; docs/security.md "Measured" has the figures.

Then (23:00-23:45, sessions, --loop-steps, machine load 1.9-8.4 from other work: quiet p99 varied
from 7 ms to 2 s between rounds of one run, so no ratio of that evening means anything) the flood's
pieces of event-loop work were cut into slices (gateway/sliced_work.py: the slot search column by
column, the page's slots, busy and free time with the claims). A figure the load hardly moves: steps
of the gateway's loop of 5 ms CPU or more during the flood, per second (median of rounds; three
runs each, the variants taking turns), and the longest step of any flood phase:

  before (6c9d029)                                  2.0 / 1.5 / 1.5   47-71 ms (full garbage collections;
                                                                      packing 24 months up to 12 ms)
  slices in the gateway (536ebef)                   1.6 / 1.6 / 1.4   49-65 ms (collections); packing 24 months
                                                                      (reader_servicer._pack) and converting a page of
                                                                      slots still up to 8-17 ms in one step
  and servicers packing and converting a few
  columns / 250 slots per step (8c38721)           0.1 / 0.0 / 0.1   49-64 ms (collections); else <= 4.8 ms
  and gc.freeze() once the gateway has started      0.0 / 0.0 / 0.0   4.3-5.0 ms
  (8c38721; now the default)

The quiet p99 ratios of those runs (with the flood / without, median of rounds): before 7.4x /
1.7x / 0.6x, slices 3.0x / 4.9x / 2.8x, with servicers 0.4x / 0.4x / 0.7x, with gc.freeze 0.2x /
3.4x / 1.6x (the last at load ~2: 8.0 ms without the flood, 12.5 ms with it). On a quiet machine
(load 0.2-1.1) with all of it landed, two runs: 5.36 -> 10.49 ms (1.96x) and 4.68 -> 9.83 ms (2.10x).

2026-12-01, quiet machine (load 0.3-0.9): before, 5.31 -> 12.67 ms (2.39x; steps >= 5 ms 0.5-0.8/s,
longest 6-7 ms). --step-stacks showed those steps in the packing of 24 months (paused every 5
columns, ~1.3 ms each) and in the responses' constructors copying the packed columns or the page of
slots whole (~2 ms). Packed in place and paused on the clock every 0.5 ms (otv_sdk/loop_share.py),
sliced work in the same 0.5 ms: steps >= 5 ms none, longest 2-3 ms, and 5.09 -> 7.67 ms (1.51x),
5.49 -> 7.62 ms (1.39x), 4.70 -> 7.71 ms (1.64x) in three runs.

--step-stacks samples, every 0.5 ms, where the gateway's loop thread is once a step has run for
1 ms, and lists the most frequent places (the innermost frame and the project's frames around it;
code inside grpcio's Cython shows as the last Python frame it left, such as create_future). It
lowers the gateway's GIL switch interval to 0.5 ms so the sampler gets its turns: diagnosis only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import gc
import json
import logging
import os
import random
import re
import resource
import secrets
import signal
import statistics
import string
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

import grpc
from scenario import COLUMNS, write_scenario

from gateway.app import Gateway
from gateway.config import RateLimitConfig, parse_config
from gateway.partners import PartnerRegistry
from otv.v1 import patient_lookup_service_pb2, patient_pb2, reader_service_pb2, time_pb2
from otv_rules.contact_values import normalize_email, normalize_phone
from otv_sdk import conversion as cv
from otv_sdk.limits import (
    MAX_COLUMNS,
    MAX_CONTACT_VALUE,
    MAX_CONTACTS,
    MAX_NAME_PART,
    MAX_PARTNER_REQUEST_BYTES,
    MAX_REQUEST_ID,
)
from otv_sdk.models import Interval
from otv_sdk.session_signer import SessionSigner
from otv_sdk.signing import Signer, generate_key_pair
from otv_sdk.timewindow import add_months

PRACTICE = "bench"
PARENT = f"practices/{PRACTICE}"
QUIET_METHOD = "/otv.v1.ReaderService/ListCalendars"
FLOODER = "flooder"
PADDED_BYTES = 65_500  # just under MAX_PARTNER_REQUEST_BYTES (65,536)
FLOOD_LEAD_SECONDS = 1.5  # the flood reaches its steady state before the quiet calls are timed
LAG_TICK_SECONDS = 0.01
TARGET_RATIO = 2.0
LONG_STEP_MS = 1.0  # --loop-steps records steps of the gateway's loop at least this long (thread CPU)
STACK_SAMPLE_SECONDS = 0.0005  # --step-stacks: how often the loop thread's stack is sampled
STACKS_SHOWN = 25

Raw = grpc.aio.UnaryUnaryMultiCallable[bytes, bytes]  # bytes in and out: no (de)serialising


# --- requests ----------------------------------------------------------------------------------


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def _padded(body: bytes, size: int) -> bytes:
    """body with an unknown length-delimited field (number 1000) appended, `size` bytes in all.

    Protobuf parsers keep unknown fields and the servicers ignore them: the request stays valid."""
    tag = _varint((1000 << 3) | 2)
    filler = size - len(body) - len(tag) - 3  # a length below 2^21 takes three varint bytes
    padded = body + tag + _varint(filler) + b"x" * filler
    assert len(padded) == size, (len(padded), size)
    return padded


def _window() -> time_pb2.TimeInterval:
    """24 months from now (a minute boundary): the longest window, inside the reader's kept engine."""
    start = datetime.now(UTC).replace(second=0, microsecond=0)
    return cv.interval_to_proto(Interval(start, add_months(start, 24)))


def _letters(rng: random.Random, size: int) -> str:
    return "".join(rng.choice(string.ascii_lowercase) for _ in range(size))


def _name(rng: random.Random) -> str:
    """MAX_NAME_PART characters: words of random letters (so every call is a new patient)."""
    letters = _letters(rng, MAX_NAME_PART)
    return "".join(" " if i % 10 == 9 and i < MAX_NAME_PART - 1 else c for i, c in enumerate(letters)).title()


def _contacts(rng: random.Random) -> list[patient_pb2.Contact]:
    """MAX_CONTACTS contacts of MAX_CONTACT_VALUE characters each, all of them valid."""
    contacts = []
    for index in range(MAX_CONTACTS):
        if index % 2 == 0:  # local part of 64 (SMTP's limit), then a long domain
            local = _letters(rng, 64)
            domain_size = MAX_CONTACT_VALUE - len(local) - 1 - len(".de")
            value = f"{local}@{_letters(rng, domain_size)}.de"
            kind = patient_pb2.CONTACT_KIND_EMAIL
        else:  # a German mobile number, written with separators up to the limit
            digits = f"151{rng.randrange(10_000_000, 100_000_000)}"
            value = "+49" + "-" * (MAX_CONTACT_VALUE - 3 - len(digits)) + digits
            kind = patient_pb2.CONTACT_KIND_MOBILE
        assert len(value) == MAX_CONTACT_VALUE
        contacts.append(patient_pb2.Contact(kind=kind, value=value))
    return contacts


def _patient_body(rng: random.Random) -> bytes:
    request = patient_lookup_service_pb2.FindOrCreatePatientRequest(
        parent=PARENT,
        request_id=secrets.token_hex(MAX_REQUEST_ID // 2),
        given_name=_name(rng),
        family_name=_name(rng),
        birth_date=time_pb2.Date(year=1980 + rng.randrange(30), month=1 + rng.randrange(12), day=1 + rng.randrange(28)),
        contacts=_contacts(rng),
    )
    return request.SerializeToString()


@dataclass(frozen=True, slots=True)
class FloodKind:
    name: str
    method: str
    body: Callable[[], bytes]


def flood_kinds(seed: int, only: frozenset[str] = frozenset()) -> list[FloodKind]:
    """The flooder's requests, round robin (all, or those named in `only`); constant bodies serialised once."""
    window = _window()
    columns = [f"{PARENT}/columns/{c}" for c in COLUMNS]
    free = reader_service_pb2.GetFreeTimeRequest(parent=PARENT, window=window, columns=columns).SerializeToString()
    busy = reader_service_pb2.ListBusyTimesRequest(parent=PARENT, window=window, columns=columns).SerializeToString()
    slots = reader_service_pb2.FindSlotsRequest(
        parent=PARENT,
        appointment_type=f"{PARENT}/appointmentTypes/kontrolle",  # offered by all 20 columns
        window=window,
        columns=columns,
        page_size=1000,
    ).SerializeToString()
    missing = [f"{PARENT}/columns/{index:03d}{'z' * 125}" for index in range(MAX_COLUMNS)]
    refused = reader_service_pb2.ListBusyTimesRequest(parent=PARENT, window=window, columns=missing)
    busy_64k = _padded(busy, PADDED_BYTES)
    refused_64k = _padded(refused.SerializeToString(), PADDED_BYTES)
    assert len(busy_64k) <= MAX_PARTNER_REQUEST_BYTES
    assert len(refused_64k) <= MAX_PARTNER_REQUEST_BYTES
    rng = random.Random(seed)
    reader = "/otv.v1.ReaderService/"
    kinds = [
        FloodKind("free_time_24m", reader + "GetFreeTime", lambda: free),
        FloodKind("busy_times_24m", reader + "ListBusyTimes", lambda: busy),
        FloodKind("find_slots_24m", reader + "FindSlots", lambda: slots),
        FloodKind("patient_10x254", "/otv.v1.PatientLookupService/FindOrCreatePatient", lambda: _patient_body(rng)),
        FloodKind("busy_times_64k", reader + "ListBusyTimes", lambda: busy_64k),
        FloodKind("columns_64_refused", reader + "ListBusyTimes", lambda: refused_64k),
    ]
    return [kind for kind in kinds if not only or kind.name in only]


def _check_requests() -> dict[str, int]:
    """Sizes of the flood requests, after checking they are what the docstring says."""
    kinds = {kind.name: kind for kind in flood_kinds(0)}
    sizes = {name: len(kind.body()) for name, kind in kinds.items()}
    patient = patient_lookup_service_pb2.FindOrCreatePatientRequest.FromString(_patient_body(random.Random(1)))
    assert len(patient.given_name) == len(patient.family_name) == MAX_NAME_PART
    for contact in patient.contacts:
        check = normalize_email if contact.kind == patient_pb2.CONTACT_KIND_EMAIL else normalize_phone
        check(contact.value)  # raises if the gateway would refuse it
    padded = reader_service_pb2.ListBusyTimesRequest.FromString(kinds["busy_times_64k"].body())
    assert len(padded.columns) == len(COLUMNS)
    return sizes


# --- processes -----------------------------------------------------------------------------------


def _cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process, all its threads (Linux /proc)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _signers(folder: Path) -> dict[str, Signer]:
    keys = json.loads((folder / "partners.json").read_text())
    return {p: Signer(k["key_id"], k["private"], "otv") for p, k in keys.items()}


Authenticate = Callable[[str, bytes], Awaitable[list[tuple[str, str]]]]


def _authenticator(signer: Signer, channel: grpc.aio.Channel, scheme: str) -> Authenticate:
    """Metadata for one call: otv-session-v1 (the partner client's default: a session per
    channel, an HMAC per call) or otv-ed25519-v1 (a signature per call, a nonce the gateway stores)."""
    if scheme == "session":
        return SessionSigner(signer, channel).headers

    async def signed(method: str, body: bytes) -> list[tuple[str, str]]:
        return signer.headers(method, body)

    return signed


def _sample_long_steps(running: list[float], loop_thread: int, samples: Counter[str]) -> None:
    """Every half millisecond, while a step of the loop has run for a millisecond or more, note where
    the loop thread is: its innermost frame and the project's frames around it (--step-stacks)."""
    while True:
        time.sleep(STACK_SAMPLE_SECONDS)
        began = running[0]
        if not began or time.perf_counter() - began < LONG_STEP_MS / 1000:
            continue
        frame = sys._current_frames().get(loop_thread)  # diagnosis only
        if frame is None:
            continue
        stack = traceback.extract_stack(frame)
        ours = [f for f in stack if "/src/" in f.filename]
        inner = stack[-1]
        names = [f"{Path(f.filename).stem}.{f.name}:{f.lineno}" for f in ours[-4:]]
        if not ours or ours[-1] is not inner:
            names.append(f"[{Path(inner.filename).stem}.{inner.name}]")
        samples[" > ".join(names)] += 1


def _time_loop_steps(long_steps: list[tuple[float, float, str]], samples: Counter[str] | None = None) -> None:
    """Record every step of the loop (a callback, a task's step) that took LONG_STEP_MS of the loop
    thread's CPU time or more: (when, CPU ms, the task's name or the callback's). CPU time of the
    thread, not wall time, so what other processes on the machine do hardly changes the figure.
    Patches asyncio's Handle: diagnosis only."""
    run = asyncio.events.Handle._run
    running = [0.0]  # when the current step began (perf_counter), 0 between steps
    if samples is not None:
        sys.setswitchinterval(STACK_SAMPLE_SECONDS)  # so the sampler gets the GIL within a step
        sampler = threading.Thread(
            target=_sample_long_steps, args=(running, threading.get_ident(), samples), daemon=True
        )
        sampler.start()

    def timed(handle: asyncio.Handle) -> None:
        began = time.thread_time()
        running[0] = time.perf_counter()
        run(handle)
        running[0] = 0.0
        took = (time.thread_time() - began) * 1000
        if took >= LONG_STEP_MS:
            callback = handle._callback  # type: ignore[attr-defined]
            owner = getattr(callback, "__self__", None)  # a task's step or wakeup
            name = owner.get_name() if isinstance(owner, asyncio.Task) else getattr(callback, "__qualname__", "?")
            long_steps.append((time.time(), took, name))

    asyncio.events.Handle._run = timed  # type: ignore[method-assign]
    collecting: list[float] = []

    def collections(phase: str, info: dict[str, int]) -> None:
        """Garbage collections of LONG_STEP_MS or more, as steps named after their generation."""
        if phase == "start":
            collecting[:] = [time.thread_time()]
        elif collecting:
            took = (time.thread_time() - collecting[0]) * 1000
            if took >= LONG_STEP_MS:
                long_steps.append((time.time(), took, f"(garbage collection, generation {info['generation']})"))

    gc.callbacks.append(collections)


async def _serve(
    folder: Path,
    profile: Path | None,
    slow_callback_ms: float | None,
    loop_steps: bool,
    freeze: bool,
    step_stacks: bool = False,
) -> None:
    """The gateway process: start, register the partners, tick, and stop on SIGTERM."""
    loop = asyncio.get_running_loop()
    long_steps: list[tuple[float, float, str]] = []
    samples: Counter[str] | None = Counter() if step_stacks else None
    if loop_steps or step_stacks:
        _time_loop_steps(long_steps, samples)
    if slow_callback_ms is not None:
        logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
        loop.set_debug(True)
        loop.slow_callback_duration = slow_callback_ms / 1000
    config = parse_config(json.loads((folder / "gateway.json").read_text()), folder)
    gateway = await Gateway.start(config)
    registry = PartnerRegistry(gateway.router.store)
    for partner, key in json.loads((folder / "partners.json").read_text()).items():
        registry.add_partner(partner)
        registry.add_key(partner, key["key_id"], key["public"])
        registry.grant(partner, PRACTICE)
    if freeze:  # what the gateway holds after its start is never garbage; full collections skip it
        gc.collect()
        gc.freeze()
    ticks: list[tuple[float, float, int]] = []

    async def ticker() -> None:
        """How late the loop wakes, and how many jobs wait for asyncio.to_thread's default executor."""
        while True:
            due = time.perf_counter() + LAG_TICK_SECONDS
            await asyncio.sleep(LAG_TICK_SECONDS)
            executor = getattr(loop, "_default_executor", None)  # private, read for diagnosis only
            queue = getattr(executor, "_work_queue", None)
            waiting = queue.qsize() if queue is not None else 0
            ticks.append((time.time(), (time.perf_counter() - due) * 1000, waiting))

    profiler = cProfile.Profile() if profile is not None else None
    if profiler is not None:  # the parent switches it on for the flood phases only
        loop.add_signal_handler(signal.SIGUSR1, profiler.enable)
        loop.add_signal_handler(signal.SIGUSR2, profiler.disable)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    tick = asyncio.create_task(ticker())
    await asyncio.to_thread((folder / "gateway.port").write_text, str(gateway.port))
    await stop.wait()
    tick.cancel()
    await gateway.stop(0)
    (folder / "ticks.json").write_text(json.dumps(ticks))
    (folder / "steps.json").write_text(json.dumps(long_steps))
    if samples is not None:
        (folder / "stacks.json").write_text(json.dumps(samples.most_common(STACKS_SHOWN)))
    if profiler is not None and profile is not None:
        profiler.disable()
        profiler.dump_stats(profile)


def _ready_then_go() -> float:
    """Tell the parent this process is ready; return the start time (epoch seconds) it sends back."""
    print("ready", flush=True)
    return float(sys.stdin.readline())


async def _quiet(
    port: int, folder: Path, partners: list[str], rate: float, seconds: float, scheme: str
) -> dict[str, Any]:
    """Each quiet partner calls ListCalendars every 1/rate s on its own channel; times from when due."""
    signers = _signers(folder)
    body = reader_service_pb2.ListCalendarsRequest(parent=PARENT).SerializeToString()
    channels = [grpc.aio.insecure_channel(f"127.0.0.1:{port}") for _ in partners]
    calls: list[Raw] = [channel.unary_unary(QUIET_METHOD) for channel in channels]
    auths = [_authenticator(signers[p], c, scheme) for p, c in zip(partners, channels, strict=True)]
    for call, auth in zip(calls, auths, strict=True):  # connect (and open the session), check the answer
        for _ in range(3):
            raw = await call(body, timeout=30, metadata=await auth(QUIET_METHOD, body))
        assert len(reader_service_pb2.ListCalendarsResponse.FromString(raw).columns) == len(COLUMNS)
    start_at = await asyncio.to_thread(_ready_then_go)
    cpu = _own_cpu_seconds()
    t0 = time.perf_counter() + (start_at - time.time())
    latencies: list[float] = []
    send_lags: list[float] = []
    codes: Counter[str] = Counter()

    async def one(call: Raw, auth: Authenticate, due: float) -> None:
        send_lags.append((time.perf_counter() - due) * 1000)
        try:
            await call(body, timeout=30, metadata=await auth(QUIET_METHOD, body))
            codes["OK"] += 1
            latencies.append((time.perf_counter() - due) * 1000)
        except grpc.aio.AioRpcError as error:
            codes[error.code().name] += 1

    async def partner_loop(index: int) -> None:
        call, auth = calls[index], auths[index]
        offset = index / (rate * len(partners))  # staggered, so the partners' calls do not coincide
        tasks = []
        k = 0
        while (due := t0 + offset + k / rate) < t0 + seconds:
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(call, auth, due)))
            k += 1
        await asyncio.gather(*tasks)

    await asyncio.gather(*(partner_loop(i) for i in range(len(partners))))
    cpu = _own_cpu_seconds() - cpu
    for channel in channels:
        await channel.close()
    return {"latencies_ms": latencies, "send_lag_ms": send_lags, "codes": dict(codes), "cpu_s": cpu}


async def _flood(
    port: int, folder: Path, concurrency: int, seconds: float, seed: int, only: frozenset[str], scheme: str
) -> dict[str, Any]:
    """Keep `concurrency` calls in flight, round robin over the flood kinds, until the time is up."""
    signer = _signers(folder)[FLOODER]
    kinds = flood_kinds(seed, only)
    channels = [grpc.aio.insecure_channel(f"127.0.0.1:{port}") for _ in range(4)]
    calls: list[dict[str, Raw]] = [{k.method: channel.unary_unary(k.method) for k in kinds} for channel in channels]
    auths = [_authenticator(signer, channel, scheme) for channel in channels]
    for kind in kinds:  # connect (and, on the first run, let the gateway build its engine)
        for index in range(len(channels)):
            body = kind.body()
            with contextlib.suppress(grpc.aio.AioRpcError):
                await calls[index][kind.method](body, timeout=60, metadata=await auths[index](kind.method, body))
    start_at = await asyncio.to_thread(_ready_then_go)
    await asyncio.sleep(max(0.0, start_at - time.time()))
    cpu = _own_cpu_seconds()
    deadline = time.perf_counter() + seconds
    told = asyncio.create_task(asyncio.to_thread(sys.stdin.readline))  # the parent says stop (or closes stdin)
    outcomes: Counter[tuple[str, str]] = Counter()
    ok_ms: dict[str, list[float]] = {kind.name: [] for kind in kinds}

    async def worker(index: int) -> None:
        position = index
        while not told.done() and time.perf_counter() < deadline:
            kind = kinds[position % len(kinds)]
            position += 1
            body = kind.body()
            started = time.perf_counter()
            try:
                channel = index % len(calls)
                await calls[channel][kind.method](body, timeout=60, metadata=await auths[channel](kind.method, body))
                outcomes[kind.name, "OK"] += 1
                ok_ms[kind.name].append((time.perf_counter() - started) * 1000)
            except grpc.aio.AioRpcError as error:
                outcomes[kind.name, error.code().name] += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    elapsed = time.perf_counter() - started
    told.cancel()  # the thread itself ends with stdin
    cpu = _own_cpu_seconds() - cpu
    for channel in channels:
        await channel.close()
    by_kind: dict[str, dict[str, int]] = {}
    for (kind_name, code), count in sorted(outcomes.items()):
        by_kind.setdefault(kind_name, {})[code] = count
    return {
        "seconds": elapsed,
        "outcomes": by_kind,
        "ok_median_ms": {k: round(statistics.median(v), 1) for k, v in ok_ms.items() if v},
        "cpu_s": cpu,
    }


# --- the parent: gateway, rounds, phases ---------------------------------------------------------


class Child:
    """A load process: started, waits until it says ready, goes when told, leaves its result."""

    def __init__(self, role: str, folder: Path, port: int, scheme: str, extra: list[str]) -> None:
        command = [sys.executable, __file__, "--role", role, "--folder", str(folder), "--port", str(port)]
        command += ["--scheme", scheme, *extra]
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def wait_ready(self) -> None:
        stdout: IO[str] | None = self.process.stdout
        assert stdout is not None
        line = stdout.readline()
        if line.strip() != "ready":
            self.process.kill()
            raise SystemExit(f"a load process failed to start: {line!r}")

    def go(self, start_at: float) -> None:
        stdin: IO[str] | None = self.process.stdin
        assert stdin is not None
        stdin.write(f"{start_at}\n")
        stdin.flush()

    def result(self) -> dict[str, Any]:
        stdout, _ = self.process.communicate(timeout=300)
        if self.process.returncode != 0:
            raise SystemExit(f"a load process failed (exit {self.process.returncode})")
        result: dict[str, Any] = json.loads(stdout.strip().splitlines()[-1])
        return result


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _tick_stats(ticks: list[tuple[float, float, int]], start: float, end: float) -> dict[str, float]:
    lags = [lag for at, lag, _ in ticks if start <= at <= end]
    waiting = [float(n) for at, _, n in ticks if start <= at <= end]
    if not lags:
        return {}
    return {
        "lag_p50_ms": round(_percentile(lags, 0.5), 2),
        "lag_p99_ms": round(_percentile(lags, 0.99), 2),
        "lag_max_ms": round(max(lags), 1),
        # Time the loop woke late in all, per second of the phase.
        "late_fraction": round(sum(lags) / 1000 / (end - start), 3),
        "executor_queue_median": statistics.median(waiting),
        "executor_queue_max": max(waiting),
    }


def _step_stats(steps: list[tuple[float, float, str]], start: float, end: float) -> dict[str, Any]:
    """Loop steps of LONG_STEP_MS CPU or more in the window: how many per second, the longest, and
    by task (gRPC names a call's task after its method) the count and longest of those of 2 ms or more."""
    took = [ms for at, ms, _ in steps if start <= at <= end]
    seconds = end - start
    by_task: dict[str, list[float]] = {}
    for at, ms, name in steps:
        if start <= at <= end and ms >= 2:
            by_task.setdefault(re.sub(r"^Task-\d+$", "Task-N", name), []).append(ms)
    return {
        "long_steps_by_task": {
            name: {"steps": len(ms), "max_ms": round(max(ms), 2)}
            for name, ms in sorted(by_task.items(), key=lambda item: -len(item[1]))
        },
        "steps_over_1ms_per_s": round(sum(ms >= 1 for ms in took) / seconds, 2),
        "steps_over_2ms_per_s": round(sum(ms >= 2 for ms in took) / seconds, 2),
        "steps_over_5ms_per_s": round(sum(ms >= 5 for ms in took) / seconds, 2),
        "step_max_ms": round(max(took, default=0.0), 2),
        # CPU time of the loop spent in such steps, per second of the phase.
        "long_step_fraction": round(sum(took) / 1000 / seconds, 4),
    }


@dataclass(frozen=True, slots=True)
class Settings:
    seconds: float
    rounds: int
    quiet_partners: int
    quiet_rate: float
    concurrency: int
    flooder_rate: RateLimitConfig | None
    profile: Path | None
    slow_callback_ms: float | None
    switch_interval_ms: float | None
    scheme: str
    loop_steps: bool
    gc_freeze: bool
    kinds: frozenset[str]
    step_stacks: bool = False


def _phase(
    name: str, folder: Path, port: int, gateway_pid: int, settings: Settings, seed: int, profile: bool
) -> dict[str, Any]:
    quiet_ids = [f"quiet-{i + 1}" for i in range(settings.quiet_partners)]
    quiet = Child(
        "quiet",
        folder,
        port,
        settings.scheme,
        [
            "--partners",
            ",".join(quiet_ids),
            "--quiet-rate",
            str(settings.quiet_rate),
            "--seconds",
            str(settings.seconds),
        ],
    )
    flooder = None
    if name == "B":
        flood_seconds = 3 * (FLOOD_LEAD_SECONDS + settings.seconds) + 60  # a safeguard: it stops when told
        flooder = Child(
            "flood",
            folder,
            port,
            settings.scheme,
            [
                *("--concurrency", str(settings.concurrency), "--seconds", str(flood_seconds)),
                *("--seed", str(seed), "--kinds", ",".join(sorted(settings.kinds))),
            ],
        )
    quiet.wait_ready()
    if flooder is not None:
        flooder.wait_ready()
    go = time.time() + 0.3
    measured = go + (FLOOD_LEAD_SECONDS if flooder is not None else 0.0)
    if flooder is not None:
        flooder.go(go)
        if profile:
            os.kill(gateway_pid, signal.SIGUSR1)
    quiet.go(measured)
    time.sleep(max(0.0, measured - time.time()))
    gateway_cpu = _cpu_seconds(gateway_pid)
    quiet_result = quiet.result()  # every quiet call answered; only then does the flood stop
    ended = time.time()
    gateway_cpu = _cpu_seconds(gateway_pid) - gateway_cpu
    flood_result = flooder.result() if flooder is not None else None
    if profile and flooder is not None:
        os.kill(gateway_pid, signal.SIGUSR2)
    time.sleep(0.5)  # let what the flood left in the gateway settle before the next phase
    latencies = quiet_result["latencies_ms"]
    row: dict[str, Any] = {
        "phase": name,
        "quiet_calls": len(latencies),
        "quiet_codes": quiet_result["codes"],
        "p50_ms": round(_percentile(latencies, 0.5), 2),
        "p90_ms": round(_percentile(latencies, 0.9), 2),
        "p99_ms": round(_percentile(latencies, 0.99), 2),
        "max_ms": round(max(latencies), 1) if latencies else None,
        "quiet_send_lag_p99_ms": round(_percentile(quiet_result["send_lag_ms"], 0.99), 2),
        "window": (measured, ended),
        "gateway_cpu_per_s": round(gateway_cpu / (ended - measured), 3),
        "quiet_cpu_per_s": round(quiet_result["cpu_s"] / (ended - measured), 3),
        "latencies_ms": [round(v, 3) for v in latencies],
    }
    if flood_result is not None:
        outcomes = flood_result["outcomes"]
        totals: Counter[str] = Counter()
        for counts in outcomes.values():
            totals.update(counts)
        row["flood"] = {
            "seconds": round(flood_result["seconds"], 2),
            "calls_per_s": round(sum(totals.values()) / flood_result["seconds"], 1),
            "ok_per_s": round(totals["OK"] / flood_result["seconds"], 1),
            "codes": dict(totals),
            "by_kind": outcomes,
            "ok_median_ms": flood_result["ok_median_ms"],
            "cpu_per_s": round(flood_result["cpu_s"] / flood_result["seconds"], 3),
        }
    return row


def _start_gateway(folder: Path, settings: Settings) -> tuple[subprocess.Popen[bytes], int]:
    command = [sys.executable, __file__, "--role", "gateway", "--folder", str(folder)]
    if settings.profile is not None:
        command += ["--gateway-profile", str(settings.profile.resolve())]
    if settings.slow_callback_ms is not None:
        command += ["--slow-callback-ms", str(settings.slow_callback_ms)]
    if settings.switch_interval_ms is not None:
        command += ["--switch-interval-ms", str(settings.switch_interval_ms)]
    if settings.loop_steps:
        command += ["--loop-steps"]
    if settings.gc_freeze:
        command += ["--gc-freeze"]
    if settings.step_stacks:
        command += ["--step-stacks"]
    log = (folder / "gateway.log").open("wb")
    process = subprocess.Popen(command, stderr=log)
    port_file = folder / "gateway.port"
    for _ in range(1200):
        if port_file.exists() and port_file.read_text():
            return process, int(port_file.read_text())
        if process.poll() is not None:
            break
        time.sleep(0.05)
    process.kill()
    raise SystemExit(f"the gateway did not start:\n{(folder / 'gateway.log').read_text()}")


def run(settings: Settings) -> dict[str, Any]:
    sizes = _check_requests()
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        now = datetime.now(UTC)
        started = time.perf_counter()
        write_scenario(folder / "practice.sqlite", (now - timedelta(days=now.weekday())).date())
        scenario_s = time.perf_counter() - started
        partners = [FLOODER, *(f"quiet-{i + 1}" for i in range(settings.quiet_partners))]
        keys = {}
        for partner in partners:
            private, public = generate_key_pair()
            keys[partner] = {"key_id": f"{partner}-1", "private": private, "public": public}
        (folder / "partners.json").write_text(json.dumps(keys))
        gateway_section: dict[str, Any] = {
            "listen": "127.0.0.1:0",
            "state_store": f"sqlite:///{folder / 'gateway-state.sqlite'}",
        }
        if settings.flooder_rate is not None:
            gateway_section["partner_rate_limits"] = {FLOODER: settings.flooder_rate.model_dump()}
        config = {
            "gateway": gateway_section,
            "practices": {
                PRACTICE: {
                    "adapter": {"plugin": "reference", "settings": {"database": "practice.sqlite", "demo": False}}
                }
            },
        }
        (folder / "gateway.json").write_text(json.dumps(config))
        parsed = parse_config(config, folder).gateway
        flooder_limit = parsed.partner_rate_limits.get(FLOODER, parsed.rate_limit)
        process, port = _start_gateway(folder, settings)
        phases: list[dict[str, Any]] = []
        try:
            # Warm-up: connections, the reader's 25-month engine, the first patients; not measured.
            warm = Child(
                "flood", folder, port, settings.scheme, ["--concurrency", "4", "--seconds", "2", "--seed", "0"]
            )
            warm.wait_ready()
            warm.go(time.time())
            time.sleep(2)
            warm.result()
            for index in range(settings.rounds):
                for phase in ("A", "B"):
                    row = _phase(phase, folder, port, process.pid, settings, index + 1, settings.profile is not None)
                    row["round"] = index + 1
                    phases.append(row)
                    print(_phase_line(row), flush=True)
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
        ticks: list[tuple[float, float, int]] = (
            json.loads((folder / "ticks.json").read_text()) if (folder / "ticks.json").exists() else []
        )
        long_steps: list[tuple[float, float, str]] = (
            json.loads((folder / "steps.json").read_text()) if settings.loop_steps else []
        )
        slow = (folder / "gateway.log").read_text(errors="replace") if settings.slow_callback_ms is not None else ""
        stacks = json.loads((folder / "stacks.json").read_text()) if settings.step_stacks else []
    for row in phases:
        window = row.pop("window")
        row["gateway"] = _tick_stats(ticks, *window)
        if settings.loop_steps:
            row["gateway"].update(_step_stats(long_steps, *window))
    result = _summary(phases, settings, sizes, scenario_s, parsed.rate_limit, flooder_limit, slow)
    if settings.step_stacks:
        result["step_stacks"] = stacks
    return result


def _summary(
    phases: list[dict[str, Any]],
    settings: Settings,
    sizes: dict[str, int],
    scenario_s: float,
    default_limit: RateLimitConfig,
    flooder_limit: RateLimitConfig,
    slow: str,
) -> dict[str, Any]:
    def of(phase: str, key: str) -> list[float]:
        return [row[key] for row in phases if row["phase"] == phase]

    def pooled(phase: str, q: float) -> float:
        return round(_percentile([v for row in phases if row["phase"] == phase for v in row["latencies_ms"]], q), 2)

    baseline, flood = statistics.median(of("A", "p99_ms")), statistics.median(of("B", "p99_ms"))
    ratio = flood / baseline
    pooled_figures = {phase: {"p50_ms": pooled(phase, 0.5), "p99_ms": pooled(phase, 0.99)} for phase in ("A", "B")}
    for row in phases:
        del row["latencies_ms"]
    codes: Counter[str] = Counter()
    by_kind: dict[str, Counter[str]] = {}
    for row in phases:
        if "flood" in row:
            codes.update(row["flood"]["codes"])
            for kind, counts in row["flood"]["by_kind"].items():
                by_kind.setdefault(kind, Counter()).update(counts)
    result: dict[str, Any] = {
        "configuration": {
            "seconds_per_phase": settings.seconds,
            "rounds": settings.rounds,
            "quiet_partners": settings.quiet_partners,
            "quiet_rate_per_partner": settings.quiet_rate,
            "flooder_concurrency": settings.concurrency,
            "default_rate_limit": default_limit.model_dump(),
            "flooder_rate_limit": flooder_limit.model_dump(),
            "flood_request_bytes": {k: v for k, v in sizes.items() if not settings.kinds or k in settings.kinds},
            "cpus": os.cpu_count(),
            "scheme": settings.scheme,
            "loop_steps": settings.loop_steps,
            "gc_freeze": settings.gc_freeze,
            "gateway_switch_interval_ms": settings.switch_interval_ms or sys.getswitchinterval() * 1000,
            "scenario_generated_s": round(scenario_s, 1),
        },
        "baseline_p99_ms": round(baseline, 2),
        "flood_p99_ms": round(flood, 2),
        "ratio": round(ratio, 2),
        "target_ratio": TARGET_RATIO,
        "meets_target": ratio <= TARGET_RATIO,
        "round_ratios": [round(b / a, 2) for a, b in zip(of("A", "p99_ms"), of("B", "p99_ms"), strict=True)],
        "pooled": pooled_figures,
        "flooder_codes": dict(codes),
        "flooder_by_kind": {kind: dict(counts) for kind, counts in sorted(by_kind.items())},
        "phases": phases,
    }
    if slow:
        result["slow_callbacks"] = _slow_steps(slow)
    return result


def _slow_steps(log: str) -> list[dict[str, Any]]:
    """asyncio's "Executing <Task ... name='...' coro=<...>> took 0.05 seconds" lines, grouped by task."""
    steps: dict[str, list[float]] = {}
    for line in log.splitlines():
        took = re.search(r"took ([0-9.]+) seconds", line)
        if "Executing" not in line or took is None:
            continue
        name = re.search(r"name='([^']*)'", line)
        coro = re.search(r"coro=<([\w.]+)", line)
        task = (name.group(1) if name and not name.group(1).startswith("Task-") else "") or (
            coro.group(1) if coro else line.split("Executing", 1)[1][:80]
        )
        steps.setdefault(task, []).append(float(took.group(1)) * 1000)
    return sorted(
        (
            {"task": task, "steps": len(ms), "median_ms": statistics.median(ms), "max_ms": max(ms)}
            for task, ms in steps.items()
        ),
        key=lambda row: -row["steps"] * row["median_ms"],
    )


def _phase_line(row: dict[str, Any]) -> str:
    line = (
        f"round {row['round']} {row['phase']}: quiet ListCalendars p50 {row['p50_ms']:7.2f} ms"
        f"  p99 {row['p99_ms']:8.2f} ms  ({row['quiet_calls']} calls"
    )
    errors = {code: n for code, n in row["quiet_codes"].items() if code != "OK"}
    line += f", errors {errors})" if errors else ")"
    line += f"  gateway CPU {row['gateway_cpu_per_s']:.2f} cores"
    if "flood" in row:
        flood = row["flood"]
        line += f"; flooder {flood['calls_per_s']:.0f} calls/s ({flood['ok_per_s']:.0f} OK/s) {flood['codes']}"
    return line


def _print(result: dict[str, Any]) -> None:
    config = result["configuration"]
    limit = config["flooder_rate_limit"]
    print()
    print(
        f"{config['quiet_partners']} quiet partners x {config['quiet_rate_per_partner']:g} ListCalendars/s (open loop);"
        f" flooder: {config['flooder_concurrency']} in flight, rate limit {limit['per_second']:g}/s"
        f" burst {limit['burst']}; {config['rounds']} rounds of {config['seconds_per_phase']:g} s per phase;"
        f" {config['cpus']} CPUs shared by gateway, flooder and quiet partners; {config['scheme']} calls"
    )
    print(
        f"{'round':>5} {'phase':>5} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'max ms':>8} {'calls':>6}"
        f" {'gw cores':>8} {'lag p99':>8} {'lag max':>8} {'to_thread q':>11} {'flood OK/s':>10} {'calls/s':>8}"
    )
    for row in result["phases"]:
        gateway = row["gateway"]
        flood = row.get("flood", {})
        print(
            f"{row['round']:>5} {row['phase']:>5} {row['p50_ms']:>8.2f} {row['p90_ms']:>8.2f} {row['p99_ms']:>8.2f}"
            f" {row['max_ms']:>8.1f} {row['quiet_calls']:>6} {row['gateway_cpu_per_s']:>8.2f}"
            f" {gateway.get('lag_p99_ms', float('nan')):>8.1f} {gateway.get('lag_max_ms', float('nan')):>8.1f}"
            f" {gateway.get('executor_queue_median', float('nan')):>11.0f}"
            f" {flood.get('ok_per_s', 0):>10.1f} {flood.get('calls_per_s', 0):>8.1f}"
        )
    if result["configuration"]["loop_steps"]:
        print("gateway loop steps by thread CPU time (--loop-steps):")
        for row in result["phases"]:
            gateway = row["gateway"]
            print(
                f"  round {row['round']} {row['phase']}: per second {gateway['steps_over_1ms_per_s']:6.1f} >= 1 ms,"
                f" {gateway['steps_over_2ms_per_s']:6.1f} >= 2 ms, {gateway['steps_over_5ms_per_s']:5.1f} >= 5 ms;"
                f" longest {gateway['step_max_ms']:6.2f} ms; {gateway['long_step_fraction']:.1%} of the loop's time"
            )
            for name, count in gateway["long_steps_by_task"].items():
                print(f"      >= 2 ms: {count['steps']:5d} steps, longest {count['max_ms']:6.2f} ms  {name}")
    print(
        "(gw cores: gateway CPU seconds per second; lag: how late the gateway's loop woke from a 10 ms sleep;"
        " to_thread q: jobs waiting for the default executor, median)"
    )
    print(f"flooder outcomes (all flood phases): {result['flooder_codes']}")
    for kind, counts in result["flooder_by_kind"].items():
        print(f"  {kind:20s} {counts}")
    verdict = "meets" if result["meets_target"] else "MISSES"
    rounds = " ".join(f"{r:.1f}x" for r in result["round_ratios"])
    print(
        f"quiet ListCalendars p99, median of rounds: {result['baseline_p99_ms']:.2f} ms without the flood,"
        f" {result['flood_p99_ms']:.2f} ms with it: {result['ratio']:.2f}x (rounds {rounds});"
        f" {verdict} the {TARGET_RATIO:g}x target"
    )
    if "step_stacks" in result:
        print(f"where the gateway's loop was {LONG_STEP_MS:g} ms or more into a step (samples, whole run):")
        for where, count in result["step_stacks"]:
            print(f"  {count:6d}  {where}")
    if "slow_callbacks" in result:
        print("gateway loop steps longer than --slow-callback-ms (asyncio debug mode), by task:")
        for row in result["slow_callbacks"]:
            print(
                f"  {row['steps']:5d} steps, median {row['median_ms']:6.1f} ms,"
                f" max {row['max_ms']:6.1f} ms  {row['task']}"
            )


def _kinds(text: str) -> frozenset[str]:
    names = frozenset(name for name in text.split(",") if name)
    unknown = names - {kind.name for kind in flood_kinds(0)}
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown flood requests {sorted(unknown)}")
    return names


def _rate(text: str) -> RateLimitConfig:
    per_second, _, burst = text.partition(":")
    return RateLimitConfig(per_second=float(per_second), burst=int(burst) if burst else int(2 * float(per_second)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20, help="quiet measurement per phase")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quiet-partners", type=int, default=3)
    parser.add_argument("--quiet-rate", type=float, default=20, help="ListCalendars per second per quiet partner")
    parser.add_argument("--concurrency", type=int, default=64, help="the flooder's calls in flight")
    parser.add_argument("--flooder-rate", type=_rate, default=None, help="PER_SECOND[:BURST], else the default")
    parser.add_argument("--kinds", type=_kinds, default=frozenset(), help="only these flood requests (comma-separated)")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--gateway-profile", type=Path, default=None, help="cProfile of the gateway's loop thread")
    parser.add_argument("--slow-callback-ms", type=float, default=None, help="asyncio debug mode in the gateway")
    parser.add_argument(
        "--switch-interval-ms", type=float, default=None, help="the gateway's GIL switch interval (default 5 ms)"
    )
    parser.add_argument(
        "--scheme",
        choices=["session", "ed25519"],
        default="session",
        help="how partners authenticate calls: otv-session-v1 (the client's default) or otv-ed25519-v1",
    )
    parser.add_argument(
        "--loop-steps", action="store_true", help="count the gateway loop's steps of 1 ms CPU or more, per phase"
    )
    parser.add_argument(
        "--step-stacks",
        action="store_true",
        help="sample where the gateway's loop is during steps of 1 ms or more (lowers its GIL switch interval)",
    )
    parser.add_argument(
        "--gc-freeze",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="gc.freeze() in the gateway once started, as `otv serve` does (--no-gc-freeze: without)",
    )
    parser.add_argument("--role", choices=["gateway", "quiet", "flood"], help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--partners", help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "gateway":
        if args.switch_interval_ms is not None:
            sys.setswitchinterval(args.switch_interval_ms / 1000)
        serve = _serve(
            args.folder, args.gateway_profile, args.slow_callback_ms, args.loop_steps, args.gc_freeze, args.step_stacks
        )
        asyncio.run(serve)
        return
    if args.role == "quiet":
        partners = args.partners.split(",")
        result = asyncio.run(_quiet(args.port, args.folder, partners, args.quiet_rate, args.seconds, args.scheme))
        print(json.dumps(result))
        return
    if args.role == "flood":
        flood = _flood(args.port, args.folder, args.concurrency, args.seconds, args.seed, args.kinds, args.scheme)
        print(json.dumps(asyncio.run(flood)))
        return
    settings = Settings(
        seconds=args.seconds,
        rounds=args.rounds,
        quiet_partners=args.quiet_partners,
        quiet_rate=args.quiet_rate,
        concurrency=args.concurrency,
        flooder_rate=args.flooder_rate,
        profile=args.gateway_profile,
        slow_callback_ms=args.slow_callback_ms,
        switch_interval_ms=args.switch_interval_ms,
        scheme=args.scheme,
        loop_steps=args.loop_steps,
        gc_freeze=args.gc_freeze,
        step_stacks=args.step_stacks,
        kinds=args.kinds,
    )
    result = run(settings)
    _print(result)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
