from __future__ import annotations

from pathlib import Path

import pytest

from herald.core.config import SettingsError, load_settings
from herald.notifications.ladder import ladder
from herald.notifications.models import Channel


class TestSeedDefaults:
    def test_ladder_defaults_are_the_seeds(self, monkeypatch: pytest.MonkeyPatch) -> None:
        for var in ("RETRY_1_DELAY", "RETRY_2_DELAY", "INAPP_RETRY_1_DELAY", "INAPP_RETRY_2_DELAY"):
            monkeypatch.delenv(var, raising=False)
        settings = load_settings()
        email = [(t.queue, t.attempts, t.delay_ms) for t in ladder(settings, Channel.EMAIL)]
        assert email == [
            ("mail", 3, 0),
            ("mail-retry-1", 3, 300_000),
            ("mail-retry-2", 2, 1_800_000),
            ("mail-dlq", 0, 0),
        ]
        inapp = [(t.queue, t.attempts, t.delay_ms) for t in ladder(settings, Channel.INAPP)]
        assert inapp == [
            ("inapp", 3, 0),
            ("inapp-retry-1", 3, 120_000),
            ("inapp-retry-2", 2, 600_000),
            ("inapp-dlq", 0, 0),
        ]

    def test_environment_names_are_the_seeds(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("INAPP_RETRY_2_MAX_ATTEMPTS", "4")
        monkeypatch.setenv("MAIL_QUEUE_CONCURRENCY", "9")
        monkeypatch.setenv("HERALD_DATA_DIR", "/tmp/elsewhere")
        settings = load_settings()
        assert ladder(settings, Channel.INAPP)[2].attempts == 4
        assert ladder(settings, Channel.EMAIL)[0].concurrency == 9
        assert settings.data_dir == Path("/tmp/elsewhere")


class TestUrls:
    def test_plain_postgres_url_gets_the_async_driver(self) -> None:
        settings = load_settings(database_url="postgresql://u@h/db")
        assert settings.effective_database_url == "postgresql+asyncpg://u@h/db"

    def test_default_database_is_sqlite_in_the_data_dir(self, tmp_path: Path) -> None:
        settings = load_settings(data_dir=tmp_path, database_url=None)
        assert settings.effective_database_url == f"sqlite+aiosqlite:///{tmp_path / 'herald.db'}"

    def test_redis_from_host_and_password(self) -> None:
        settings = load_settings(
            redis_url=None,
            redis_host="cache",
            redis_port=6380,
            redis_username="default",
            redis_password="p@ss",
        )
        assert settings.configured_redis_url == "redis://default:p%40ss@cache:6380/0"

    def test_no_redis_configured_means_embedded(self) -> None:
        assert load_settings(redis_url=None, redis_host=None).configured_redis_url is None

    def test_invalid_value_is_one_line_and_hides_secrets(self) -> None:
        with pytest.raises(SettingsError) as err:
            load_settings(redis_url="http://nope", email_port="many")
        message = str(err.value)
        assert "\n" not in message
        assert "REDIS_URL" in message and "EMAIL_PORT" in message
