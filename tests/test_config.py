from __future__ import annotations

import os
from pathlib import Path

import pytest

from loopline.config import Settings, load_settings
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


@pytest.mark.parametrize(
    ("text", "key", "suggestion"),
    [
        ('[loopline]\nurl = "postgresql://u@db/loopline"\n', "url", "did you mean 'uri'?"),
        ('[loopline]\nartifact = "s3://b/p"\n', "artifact", "did you mean 'artifacts'?"),
        ('onlinestore = "redis://cache:6379/0"\n', "onlinestore", "did you mean 'online_store'?"),
        ("[loopline]\ncolour = 3\n", "colour", ""),
    ],
    ids=["url", "artifact", "top-level", "no-close-match"],
)
def test_a_key_that_is_no_setting_is_a_config_error_naming_it(
    tmp_path: Path, text: str, key: str, suggestion: str
) -> None:
    # It was ignored: a misspelt `url` left the process on the embedded default store.
    (tmp_path / "loopline.toml").write_text(text)
    with pytest.raises(ConfigError, match=f"loopline.toml: '{key}' is not a Loopline setting") as e:
        load_settings()
    assert suggestion in (e.value.hint or "")


def test_the_loop_section_and_other_top_level_tables_are_no_settings_but_allowed(
    tmp_path: Path,
) -> None:
    (tmp_path / "loopline.toml").write_text(
        '[loopline]\nhome = "h"\n[loopline.loop.churn]\ndata = "churn"\n'
    )
    assert load_settings().home == Path("h")
    (tmp_path / "loopline.toml").write_text('home = "top"\n[tool.other]\nx = 1\n')
    assert load_settings().home == Path("top")


@pytest.mark.parametrize("endpoint", ["minio.internal:9000", "127.0.0.1:9000", "s3://minio"])
def test_an_s3_endpoint_without_http_is_a_config_error_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch, endpoint: str
) -> None:
    monkeypatch.setenv("LOOPLINE_S3_ENDPOINT_URL", endpoint)
    with pytest.raises(ConfigError, match=r"LOOPLINE_S3_ENDPOINT_URL.*http:// or https://"):
        load_settings()
    monkeypatch.setenv("LOOPLINE_S3_ENDPOINT_URL", f"https://{endpoint.split('://')[-1]}")
    assert load_settings().s3_endpoint_url == f"https://{endpoint.split('://')[-1]}"


def test_bad_value_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOOPLINE_SQLITE_BUSY_TIMEOUT_MS", "soon")
    with pytest.raises(ConfigError, match="sqlite_busy_timeout_ms"):
        load_settings()


def test_the_actor_without_user_in_the_environment_is_the_account_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Containers, cron and systemd often set no USER: the audit log and the runs'
    mlflow.user said 'unknown' for what the account did."""
    import pwd

    for name in ("LOOPLINE_ACTOR", "USER", "USERNAME"):
        monkeypatch.delenv(name, raising=False)
    account = pwd.getpwuid(os.getuid()).pw_name
    assert Settings().actor_name == account != "unknown"
    monkeypatch.setenv("USER", "alice")  # the environment still wins, as documented
    assert Settings().actor_name == "alice"
    monkeypatch.setenv("LOOPLINE_ACTOR", "ci-bot")
    assert Settings().actor_name == "ci-bot"
