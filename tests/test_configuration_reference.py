"""docs/configuration.md is generated from the configuration models and kept in step with them."""

from __future__ import annotations

import re
from pathlib import Path

from gateway.config import GatewayConfig
from gateway.config_reference import configuration_reference
from otv_cli.main import main

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "configuration.md"


def test_committed_reference_is_fresh() -> None:
    assert DOC.read_text(encoding="utf-8") == configuration_reference(), (
        "docs/configuration.md is stale: run `.venv/bin/otv config reference > docs/configuration.md`"
    )


def test_the_command_prints_it(capsys: object) -> None:
    import pytest

    assert isinstance(capsys, pytest.CaptureFixture)
    assert main(["config", "reference"]) == 0
    assert capsys.readouterr().out == configuration_reference()


def test_every_key_is_documented_with_a_meaning() -> None:
    text = configuration_reference()
    assert "(undocumented)" not in text
    for section in ("[gateway]", "[gateway.rate_limit]", "[gateway.tls]", "[practices.<practice>]",
                    "[practices.<practice>.booking]", "[practices.<practice>.adapter.remote]",
                    "[practices.<practice>.adapter.remote.tls]", "[practices.<practice>.adapter.snapshot]",
                    "[[practices.<practice>.adapter.snapshot.columns]]", "[practices.<practice>.adapter.connector]",
                    "[gateway.partner_rate_limits.<partner>]"):  # fmt: skip
        assert f"## `{section}`" in text, section
    for key in ("slot_grid_minutes", "mode", "modes", "slot_list", "listen", "http_listen", "per_second"):
        assert re.search(rf"^\| `{key}` \| ", text, re.M), key
    for name in GatewayConfig.model_fields["gateway"].annotation.model_fields:  # type: ignore[union-attr]
        assert re.search(rf"^\| `{name}` \| ", text, re.M), name


def test_links_point_at_headings() -> None:
    text = configuration_reference()
    anchors = {
        "".join(c for c in heading.lower().replace(" ", "-") if c.isalnum() or c in "-_")
        for heading in re.findall(r"^## (.+)$", text, re.M)
    }
    for target in re.findall(r"\]\(#([^)]+)\)", text):
        assert target in anchors, target
