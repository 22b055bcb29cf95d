"""TLS on the gateway's port, mutual TLS when required, and mutual TLS to remote adapters."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc
import pytest
from conftest import SECRET, reference_settings, register_test_partner, signer

from gateway.app import Gateway
from gateway.certificates import DevPki, init_dev_pki
from gateway.config import parse_config
from otv_sdk.adapter_server import serve_adapters
from otv_sdk.client import PartnerClient
from otv_sdk.errors import Unavailable
from otv_sdk.reference import create_adapter

REFERENCE = {"plugin": "reference", "settings": reference_settings()}


def config(tmp_path: Path, tls: dict[str, Any] | None, adapter: dict[str, Any] = REFERENCE) -> Any:
    gateway: dict[str, Any] = {"listen": "127.0.0.1:0", "secret_key": SECRET, "state_store": "sqlite://:memory:"}
    if tls is not None:
        gateway["tls"] = tls
    return parse_config({"gateway": gateway, "practices": {"demo": {"adapter": adapter}}}, tmp_path)


@pytest.fixture
def pki(tmp_path: Path) -> DevPki:
    return init_dev_pki(tmp_path / "certs")


def credentials(pki: DevPki, with_certificate: bool) -> grpc.ChannelCredentials:
    if not with_certificate:
        return grpc.ssl_channel_credentials(root_certificates=pki.ca.read_bytes())
    return grpc.ssl_channel_credentials(
        root_certificates=pki.ca.read_bytes(),
        private_key=pki.client_key.read_bytes(),
        certificate_chain=pki.client_cert.read_bytes(),
    )


async def test_tls_port_serves_signed_calls_and_refuses_plaintext(pki: DevPki, tmp_path: Path) -> None:
    gateway = await Gateway.start(
        config(tmp_path, {"cert_file": str(pki.server_cert), "key_file": str(pki.server_key)})
    )
    register_test_partner(gateway)
    try:
        async with PartnerClient.connect(gateway.address, credentials=credentials(pki, False), signer=signer()) as c:
            assert (await c.get_practice("demo", timeout=5)).id == "demo"
        async with PartnerClient.connect(gateway.address, signer=signer()) as plaintext:
            with pytest.raises(Unavailable):
                await plaintext.get_practice("demo", timeout=5)
    finally:
        await gateway.stop(0)


async def test_mutual_tls_refuses_a_client_without_certificate(pki: DevPki, tmp_path: Path) -> None:
    tls = {"cert_file": str(pki.server_cert), "key_file": str(pki.server_key), "client_ca_file": str(pki.ca)}
    gateway = await Gateway.start(config(tmp_path, tls))
    register_test_partner(gateway)
    try:
        async with PartnerClient.connect(gateway.address, credentials=credentials(pki, True), signer=signer()) as c:
            assert (await c.get_practice("demo", timeout=5)).id == "demo"
        async with PartnerClient.connect(gateway.address, credentials=credentials(pki, False), signer=signer()) as c:
            with pytest.raises(Unavailable):
                await c.get_practice("demo", timeout=5)
    finally:
        await gateway.stop(0)


@pytest.mark.parametrize("with_certificate", [True, False])
async def test_the_gateway_reaches_remote_adapters_over_mutual_tls(
    pki: DevPki, tmp_path: Path, with_certificate: bool
) -> None:
    server_credentials = grpc.ssl_server_credentials(
        [(pki.server_key.read_bytes(), pki.server_cert.read_bytes())],
        root_certificates=pki.ca.read_bytes(),
        require_client_auth=True,
    )
    remote = await serve_adapters(
        {"demo": create_adapter("demo", reference_settings())}, "127.0.0.1:0", credentials=server_credentials
    )
    tls: dict[str, Any] = {"ca_file": str(pki.ca)}
    if with_certificate:
        tls |= {"cert_file": str(pki.client_cert), "key_file": str(pki.client_key)}
    remote_adapter = {"remote": {"address": f"127.0.0.1:{remote.port}", "tls": tls}}
    gateway = await Gateway.start(config(tmp_path, None, remote_adapter))
    register_test_partner(gateway)
    try:
        async with PartnerClient.connect(gateway.address, signer=signer()) as client:
            if with_certificate:
                assert len((await client.list_calendars("demo", timeout=5)).columns) == 3
            else:
                with pytest.raises(Unavailable, match="cannot be reached"):
                    await client.list_calendars("demo", timeout=5)
    finally:
        await gateway.stop(0)
        await remote.stop(0)


def test_dev_pki_files(pki: DevPki) -> None:
    for path in (pki.ca, pki.server_cert, pki.server_key, pki.client_cert, pki.client_key):
        assert path.read_bytes().startswith(b"-----BEGIN")
    assert pki.server_key.stat().st_mode & 0o777 == 0o600
