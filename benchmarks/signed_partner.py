"""A partner for benchmarks: registered at a gateway with a fresh key, granted every practice."""

from __future__ import annotations

import grpc

from gateway.app import Gateway
from gateway.partners import PartnerRegistry
from otv_sdk.client import signing_interceptors
from otv_sdk.signing import Signer, generate_key_pair

# These benchmarks measure the gateway's machinery, not its per-partner limits (bench_flood.py does):
# one partner drives all the load, so its limits are lifted.
NO_PARTNER_LIMITS = {
    "per_second": 1_000_000,
    "burst": 1_000_000,
    "concurrent": 10_000,
    "queued": 100_000,
    "share": 64,
    "share_burst": 3600,
}


def register(gateway: Gateway, partner_id: str = "bench-partner") -> Signer:
    private, public = generate_key_pair()
    registry = PartnerRegistry(gateway.router.store)
    registry.add_partner(partner_id)
    key_id = f"{partner_id}-{len(registry.list_keys()) + 1}"
    registry.add_key(partner_id, key_id, public)
    for practice_id in gateway.router.practice_ids:
        registry.grant(partner_id, practice_id)
    return Signer(key_id, private, gateway.config.gateway.audience)


def signed_channel(gateway: Gateway, signer: Signer, **options: object) -> grpc.aio.Channel:
    return grpc.aio.insecure_channel(
        gateway.address, options=list(options.items()), interceptors=signing_interceptors(signer)
    )
