"""docs/configuration.md is generated from the settings model and must be committed up to date."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from server.settings import Settings

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "gen_config_docs.py"


def _generator():
    spec = importlib.util.spec_from_file_location("gen_config_docs", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_configuration_doc_is_up_to_date() -> None:
    gen = _generator()
    committed = (REPO / "docs" / "configuration.md").read_text()
    assert committed == gen.render(), "docs/configuration.md is stale: run `python scripts/gen_config_docs.py`"
    assert gen.main(["--check"]) == 0


def test_every_setting_is_documented_with_its_env_var() -> None:
    text = _generator().render()
    for name in Settings.model_fields:
        assert f"| `M2F_{name.upper()}` |" in text, name
    assert "/work/" not in text and str(REPO) not in text  # machine-independent defaults
