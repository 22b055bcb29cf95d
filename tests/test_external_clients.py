"""Clients that know nothing of this code base can call the gateway.

`buf curl` builds its requests either from the .proto files alone or from server reflection;
both are real, independent gRPC clients.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from conftest import PRACTICE, signer
from google.protobuf import json_format, message_factory
from test_contracts import ROOT, buf

from gateway.app import Gateway
from otv.v1 import reader_service_pb2


def _signed_headers(method: str, body: dict[str, Any]) -> list[str]:
    """What a partner in any language does: serialise the message, hash it, sign (docs/security.md)."""
    service, name = method.split("/")
    descriptor = reader_service_pb2.DESCRIPTOR.services_by_name[service.split(".")[-1]].methods_by_name[name]
    message = json_format.ParseDict(body, message_factory.GetMessageClass(descriptor.input_type)())
    headers = signer().headers(f"/{method}", message.SerializeToString())
    return [argument for key, value in headers for argument in ("-H", f"{key}: {value}")]


async def buf_curl(gateway: Gateway, method: str, body: dict[str, Any], *, schema: bool) -> tuple[int, str, str]:
    args = [buf(), "curl", "--protocol", "grpc", "--http2-prior-knowledge", "--data", json.dumps(body)]
    args += _signed_headers(method, body)
    if schema:
        args += ["--schema", str(ROOT / "proto")]
    args.append(f"http://{gateway.address}/{method}")
    process = await asyncio.create_subprocess_exec(
        *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()


async def test_buf_curl_with_the_proto_files_lists_calendars(gateway: Gateway) -> None:
    code, out, err = await buf_curl(
        gateway, "otv.v1.ReaderService/ListCalendars", {"parent": f"practices/{PRACTICE}"}, schema=True
    )
    assert code == 0, err
    columns = json.loads(out)["columns"]
    assert [c["name"] for c in columns] == [
        f"practices/{PRACTICE}/columns/{c}" for c in ("berg", "weber", "prophylaxe")
    ]
    assert columns[0]["kind"] == "COLUMN_KIND_PRACTITIONER"


async def test_buf_curl_through_reflection_lists_busy_times(gateway: Gateway) -> None:
    body = {
        "parent": f"practices/{PRACTICE}",
        "window": {"startTime": "2027-03-22T00:00:00Z", "endTime": "2027-03-29T00:00:00Z"},
        "columns": [f"practices/{PRACTICE}/columns/berg"],
    }
    code, out, err = await buf_curl(gateway, "otv.v1.ReaderService/ListBusyTimes", body, schema=False)
    assert code == 0, err
    (berg,) = json.loads(out)["busyTimes"]
    assert berg["column"] == f"practices/{PRACTICE}/columns/berg"
    assert len(berg["startDeltas"]) == len(berg["durations"]) > 10


async def test_buf_curl_sees_the_rich_error_details(gateway: Gateway) -> None:
    body = {"parent": f"practices/{PRACTICE}", "window": {"startTime": "2027-03-22T00:00:00Z"}}
    code, _out, err = await buf_curl(gateway, "otv.v1.ReaderService/ListBusyTimes", body, schema=True)
    assert code != 0
    assert "invalid_argument" in err
    assert "window.end_time" in err
