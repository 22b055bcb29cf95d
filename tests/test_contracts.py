"""The contract: Buf lint, generated code in step with the .proto files, API conventions."""

from __future__ import annotations

import filecmp
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from google.protobuf.descriptor import Descriptor, FileDescriptor

from otv.v1 import (
    connector_service_pb2,
    consent_service_pb2,
    patient_lookup_service_pb2,
    reader_service_pb2,
    snapshot_service_pb2,
    writer_service_pb2,
)

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import generate_protos  # noqa: E402

SERVICE_FILES: list[FileDescriptor] = [
    reader_service_pb2.DESCRIPTOR,
    writer_service_pb2.DESCRIPTOR,
    patient_lookup_service_pb2.DESCRIPTOR,
    consent_service_pb2.DESCRIPTOR,
    snapshot_service_pb2.DESCRIPTOR,
    connector_service_pb2.DESCRIPTOR,
]


def buf() -> str:
    found = shutil.which("buf") or str(Path(sys.executable).parent / "buf")
    assert Path(found).exists(), "buf is missing: install the dev extras (buf-bin)"
    return found


def test_buf_lint_is_clean() -> None:
    result = subprocess.run([buf(), "lint"], cwd=ROOT / "proto", capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def _differences(left: Path, right: Path) -> list[str]:
    """Files that differ or exist on one side only, recursively (ignoring caches)."""
    comparison = filecmp.dircmp(left, right, ignore=["__pycache__"])
    found = [*comparison.left_only, *comparison.right_only, *comparison.diff_files]
    found += [name for name in comparison.common_files if not filecmp.cmp(left / name, right / name, shallow=False)]
    for sub in comparison.common_dirs:
        found += [f"{sub}/{name}" for name in _differences(left / sub, right / sub)]
    return sorted(set(found))


def test_generated_code_is_up_to_date(tmp_path: Path) -> None:
    generate_protos.generate(tmp_path)
    stale = _differences(ROOT / "src" / "otv", tmp_path / "otv")
    assert not stale, f"generated code is stale, run `make protos`: {stale}"


def test_freshness_check_detects_a_changed_contract(tmp_path: Path) -> None:
    protos = tmp_path / "proto"
    shutil.copytree(ROOT / "proto", protos)
    reader = protos / "otv" / "v1" / "reader_service.proto"
    reader.write_text(reader.read_text().replace("message Heartbeat {}", "message Heartbeat {\n  int32 n = 1;\n}"))
    generate_protos.generate(tmp_path / "out", protos)
    stale = _differences(ROOT / "src" / "otv", tmp_path / "out" / "otv")
    assert {"v1/reader_service_pb2.py", "v1/reader_service_pb2.pyi"} <= set(stale)


def _methods() -> list[tuple[str, Descriptor, Descriptor]]:
    return [
        (method.full_name, method.input_type, method.output_type)
        for file in SERVICE_FILES
        for service in file.services_by_name.values()
        for method in service.methods
    ]


MUTATING_PREFIXES = (
    "Hold", "Confirm", "Release", "Book", "Cancel", "Reschedule", "FindOrCreate", "Record", "Upload"
)  # fmt: skip


@pytest.mark.parametrize(("method", "request_type", "response_type"), _methods(), ids=lambda v: str(v).split(".")[-1])
def test_method_conventions(method: str, request_type: Descriptor, response_type: Descriptor) -> None:
    name = method.rsplit(".", 1)[-1]
    if method == "otv.v1.ConnectorService.Connect":  # a bidirectional stream: its hello names the practice
        assert "parent" in request_type.fields_by_name["hello"].message_type.fields_by_name
        return
    assert request_type.name == f"{name}Request"
    assert response_type.name == f"{name}Response"
    fields = request_type.fields_by_name
    if name.startswith(MUTATING_PREFIXES):
        assert "request_id" in fields, f"{method} mutates and needs request_id"
    else:
        assert "request_id" not in fields
    assert "parent" in fields or "name" in fields, f"{method} must address a resource"
    if "page_token" in fields:
        assert "page_size" in fields
        assert "next_page_token" in response_type.fields_by_name


def test_every_enum_starts_with_unspecified() -> None:
    seen = 0
    for file in SERVICE_FILES:
        for dependency in [file, *file.dependencies]:
            if dependency.package != "otv.v1":
                continue
            for enum in dependency.enum_types_by_name.values():
                seen += 1
                assert enum.values_by_number[0].name.endswith("_UNSPECIFIED"), enum.full_name
    assert seen >= 8


PERSONAL_MESSAGES = {"otv.v1.Patient", "otv.v1.Contact"}
PERSONAL_FIELDS = {"given_name", "family_name", "birth_date", "contacts", "phone", "email", "note"}


def _reachable(descriptor: Descriptor, seen: set[str]) -> set[str]:
    if descriptor.full_name in seen:
        return seen
    seen.add(descriptor.full_name)
    for field in descriptor.fields:
        if field.message_type is not None:
            _reachable(field.message_type, seen)
    return seen


def test_no_reader_response_can_carry_patient_data() -> None:
    reader = reader_service_pb2.DESCRIPTOR.services_by_name["ReaderService"]
    for method in reader.methods:
        reachable = _reachable(method.output_type, set())
        assert not reachable & PERSONAL_MESSAGES, method.name
        pool = method.output_type.file.pool
        for name in reachable:
            fields = {f.name for f in pool.FindMessageTypeByName(name).fields}
            assert not fields & PERSONAL_FIELDS, (method.name, name)


def test_the_personal_data_walk_finds_patient_data_where_it_is() -> None:
    lookup = patient_lookup_service_pb2.DESCRIPTOR.services_by_name["PatientLookupService"]
    reachable = _reachable(lookup.methods_by_name["FindOrCreatePatient"].output_type, set())
    assert reachable >= PERSONAL_MESSAGES
