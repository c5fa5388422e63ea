from __future__ import annotations

from pathlib import Path

import pytest

from loopline.config import load_settings
from loopline.errors import ConfigError


def test_defaults_live_under_dot_loopline() -> None:
    s = load_settings()
    assert s.metadata_uri == "sqlite:///.loopline/loopline.db"
    assert s.artifacts_uri == ".loopline/artifacts"


def test_env_beats_toml_and_toml_beats_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "loopline.toml").write_text(
        '[loopline]\nuri = "sqlite:///from-toml.db"\nartifacts = "/from/toml"\n'
    )
    s = load_settings()
    assert (s.uri, s.artifacts) == ("sqlite:///from-toml.db", "/from/toml")
    monkeypatch.setenv("LOOPLINE_URI", "sqlite:///from-env.db")
    s = load_settings()
    assert (s.uri, s.artifacts) == ("sqlite:///from-env.db", "/from/toml")
    assert load_settings(uri="sqlite:///arg.db").uri == "sqlite:///arg.db"


def test_bad_toml_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "loopline.toml").write_text("uri = [unclosed")
    with pytest.raises(ConfigError, match=r"loopline\.toml"):
        load_settings()


def test_bad_value_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOOPLINE_SQLITE_BUSY_TIMEOUT_MS", "soon")
    with pytest.raises(ConfigError, match="sqlite_busy_timeout_ms"):
        load_settings()
