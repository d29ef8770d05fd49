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
    gen = _generator()
    text = gen.render()
    envs = [env for _, env, _ in gen.env_fields()]
    groups = Settings.groups()
    assert len(envs) == len(set(envs)) == sum(len(g.model_fields) for g in groups.values()) + len(
        [name for name in Settings.model_fields if name not in groups])
    for env in envs:
        assert f"| `{env}` |" in text, env
    assert "/work/" not in text and str(REPO) not in text  # machine-independent defaults


def test_each_documented_variable_sets_its_setting(monkeypatch) -> None:
    """The documented names are the ones pydantic-settings reads: a probe value in each reaches its setting (taken
    as it is, or refused by that setting's validation)."""
    for group, env, field in _generator().env_fields():
        if group is None:
            continue
        monkeypatch.setenv(env, "__probe__")
        try:
            Settings()
        except Exception as exc:  # noqa: BLE001 - a validation error names the setting the variable reached
            assert f"{group}." in str(exc) or group in str(exc), (env, exc)
        else:  # a string-typed setting takes the probe as it is
            assert "__probe__" in str(getattr(getattr(Settings(), group), env.split("_", 2)[2].lower())), env
        monkeypatch.delenv(env)
