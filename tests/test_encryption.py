"""Personal values are sealed at rest, and keys rotate without losing what was sealed before."""

from __future__ import annotations

from pathlib import Path

import pytest
from booking_env import booking_env, slot_request
from patient_env import as_partner

from gateway.encryption import FieldCipher, keys_from

OLD, NEW = bytes(range(32)), bytes(range(32, 64))


def test_seal_open_and_the_column_is_part_of_the_seal() -> None:
    cipher = FieldCipher({"k1": OLD}, "k1")
    sealed = cipher.seal("p-1001", "holds.patient")
    assert "p-1001" not in sealed
    assert cipher.open(sealed, "holds.patient") == "p-1001"
    with pytest.raises(ValueError, match="does not open"):
        cipher.open(sealed, "appointments.patient")


def test_rotation_keeps_old_values_readable_and_seals_with_the_new_key() -> None:
    before = FieldCipher({"k1": OLD}, "k1").seal("p-1", "c")
    rotated = FieldCipher({"k1": OLD, "k2": NEW}, "k2")
    assert rotated.open(before, "c") == "p-1"
    assert rotated.seal("p-2", "c").startswith("v1.k2.")
    with pytest.raises(ValueError, match="still configured"):
        FieldCipher({"k2": NEW}, "k2").open(before, "c")


def test_keys_come_from_configuration_then_environment_then_the_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    assert keys_from({"a": OLD.hex()}, None, b"s" * 32) == ({"a": OLD}, "a")
    monkeypatch.setenv("OTV_ENCRYPTION_KEYS", f"e2:{NEW.hex()},e1:{OLD.hex()}")
    assert keys_from({}, None, b"s" * 32) == ({"e2": NEW, "e1": OLD}, "e2")
    monkeypatch.delenv("OTV_ENCRYPTION_KEYS")
    keys, sealing = keys_from({}, None, b"s" * 32)
    assert sealing == "s1"
    assert len(keys["s1"]) == 32


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_the_store_holds_no_patient_reference_in_clear_text(backend: str, tmp_path: Path) -> None:
    async with booking_env(backend, tmp_path) as env:
        patient = await env.patient()
        first, second = await env.disjoint_slots(2)
        hold = await env.client.hold_slot("demo", slot_request(first, patient), metadata=as_partner("alpha"))
        await env.client.book_appointment("demo", slot_request(second, patient), metadata=as_partner("alpha"))
        pvs_id = env.gateway.router._scope.from_partner("alpha", patient)
        assert pvs_id is not None
        desk = await env.desk()
        stored = await desk._store.run(
            lambda tx: (
                [r["patient"] for r in tx.all("SELECT patient FROM holds")]
                + [r["patient"] for r in tx.all("SELECT patient FROM appointments")]
            )
        )
        assert len(stored) == 2
        assert all(value.startswith("v1.") and pvs_id not in value for value in stored)
        # ... and everything still reads back as before.
        assert hold.patient_id == patient
