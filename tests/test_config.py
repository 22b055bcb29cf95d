"""A wrong configuration fails at start with a message naming the bad field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import fake_adapters
import pytest
from conftest import SECRET, reference_settings

from gateway.config import ConfigError, load_config, load_secret, parse_config
from gateway.routing import build_router


def practices(adapter: dict[str, Any], practice_id: str = "demo") -> dict[str, Any]:
    return {
        "gateway": {"secret_key": SECRET, "state_store": "sqlite://:memory:"},
        "practices": {practice_id: {"adapter": adapter}},
    }


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"practices": {}}, "practices"),
        ({}, "practices"),
        (practices({"plugin": "reference"}, "Demo_1"), "practices"),
        (practices({}), "practices.demo.adapter"),
        (practices({"plugin": "reference", "remote": {"address": "h:1"}}), "practices.demo.adapter"),
        (practices({"remote": {"address": "no-port"}}), "practices.demo.adapter.remote.address"),
        (practices({"remote": {"address": "h:1"}, "settings": {"x": 1}}), "practices.demo.adapter"),
        (practices({"plugin": "reference", "extra": 1}), "practices.demo.adapter.extra"),
        ({**practices({"plugin": "reference"}), "gateway": {"listen": "localhost"}}, "gateway.listen"),
        (
            {**practices({"plugin": "reference"}), "gateway": {"shutdown_grace_seconds": -1}},
            "gateway.shutdown_grace_seconds",
        ),
        ({**practices({"plugin": "reference"}), "gateway": {"secret_key": "abc"}}, "gateway.secret_key"),
        ({**practices({"plugin": "reference"}), "gateway": {"secret_key": "ab" * 8}}, "gateway.secret_key"),
    ],
)
def test_schema_errors_name_the_field(data: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(data)
    assert str(caught.value).startswith(f"{field}:") or f"; {field}:" in str(caught.value), str(caught.value)


@pytest.mark.parametrize(
    ("adapter", "field"),
    [
        ({"plugin": "refrence"}, "practices.demo.adapter.plugin"),
        ({"plugin": "no_such_module:factory"}, "practices.demo.adapter.plugin"),
        ({"plugin": "fake_adapters:missing"}, "practices.demo.adapter.plugin"),
        ({"plugin": "fake_adapters:create_not_an_adapter"}, "practices.demo.adapter.plugin"),
        (
            {"plugin": "reference", "settings": {"time_zone": "Mars/Olympus"}},
            "practices.demo.adapter.settings.time_zone",
        ),
        (
            {"plugin": "reference", "settings": {"databse": "x.sqlite"}},
            "practices.demo.adapter.settings.databse",
        ),
    ],
)
async def test_plugin_errors_name_the_field(adapter: dict[str, Any], field: str) -> None:
    config = parse_config(practices(adapter))
    with pytest.raises(ConfigError) as caught:
        await build_router(config)
    assert str(caught.value).startswith(f"{field}:"), str(caught.value)


async def test_a_later_bad_practice_closes_the_adapters_already_opened() -> None:
    fake_adapters.CLOSED.clear()
    data = {
        "gateway": {"secret_key": SECRET, "state_store": "sqlite://:memory:"},
        "practices": {
            "good": {"adapter": {"plugin": "fake_adapters:create_refusing", "settings": reference_settings()}},
            "bad": {"adapter": {"plugin": "refrence"}},
        },
    }
    with pytest.raises(ConfigError, match=r"^practices\.bad\.adapter\.plugin"):
        await build_router(parse_config(data))
    assert fake_adapters.CLOSED == ["RefusingReader"]


def test_unreadable_and_invalid_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("[practices.demo\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(broken)


async def test_relative_database_path_is_relative_to_the_config_file(tmp_path: Path) -> None:
    config_file = tmp_path / "gateway.toml"
    config_file.write_text(
        '[practices.demo.adapter]\nplugin = "reference"\n'
        '[practices.demo.adapter.settings]\ndatabase = "data/demo.sqlite"\ndemo_anchor = "2027-03-22"\n'
    )
    router = await build_router(load_config(config_file))
    await router.aclose()
    assert (tmp_path / "data" / "demo.sqlite").exists()


async def test_secret_key_file_is_created_once_and_kept(tmp_path: Path) -> None:
    config_file = tmp_path / "gateway.toml"
    config_file.write_text('[practices.demo.adapter]\nplugin = "reference"\n')
    config = load_config(config_file)
    first = load_secret(config)
    assert load_secret(config) == first
    assert (tmp_path / "gateway-secret.key").stat().st_mode & 0o777 == 0o600
