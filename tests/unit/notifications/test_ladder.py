"""The retry ladders read from the settings: no Redis, no database, no server.

Every environment name here is one the README documents (or the field's own name, which
pydantic-settings also reads); a user's `.env` keeps working only while each reaches its tier.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from herald.core.config import Settings, SettingsError, load_settings
from herald.notifications.ladder import all_queue_names, ladder, total_attempts
from herald.notifications.models import Channel

ROW = ("queue", "attempts", "delay_ms", "concurrency")

# Each tier's ROW, as the README's table lists them.
DEFAULTS = {
    Channel.EMAIL: [
        ("mail", 3, 0, 5),
        ("mail-retry-1", 3, 300_000, 3),
        ("mail-retry-2", 2, 1_800_000, 2),
        ("mail-dlq", 0, 0, 1),
    ],
    Channel.INAPP: [
        ("inapp", 3, 0, 10),
        ("inapp-retry-1", 3, 120_000, 5),
        ("inapp-retry-2", 2, 600_000, 3),
        ("inapp-dlq", 0, 0, 1),
    ],
    Channel.WEBHOOK: [
        ("webhook", 3, 0, 10),
        ("webhook-retry-1", 3, 60_000, 5),
        ("webhook-retry-2", 3, 600_000, 3),
        ("webhook-dlq", 0, 0, 1),
    ],
}

# Each documented variable: the channel, tier and Tier attribute it sets.
DOCUMENTED = [
    ("MAIL_QUEUE_CONCURRENCY", Channel.EMAIL, 0, "concurrency"),
    ("RETRY_1_DELAY", Channel.EMAIL, 1, "delay_ms"),
    ("RETRY_1_CONCURRENCY", Channel.EMAIL, 1, "concurrency"),
    ("RETRY_2_DELAY", Channel.EMAIL, 2, "delay_ms"),
    ("RETRY_2_CONCURRENCY", Channel.EMAIL, 2, "concurrency"),
    ("DLQ_CONCURRENCY", Channel.EMAIL, 3, "concurrency"),
    ("HERALD_MAIL_MAX_ATTEMPTS", Channel.EMAIL, 0, "attempts"),
    ("HERALD_MAIL_RETRY_1_MAX_ATTEMPTS", Channel.EMAIL, 1, "attempts"),
    ("HERALD_MAIL_RETRY_2_MAX_ATTEMPTS", Channel.EMAIL, 2, "attempts"),
    ("INAPP_QUEUE_CONCURRENCY", Channel.INAPP, 0, "concurrency"),
    ("INAPP_MAX_ATTEMPTS", Channel.INAPP, 0, "attempts"),
    ("INAPP_RETRY_1_DELAY", Channel.INAPP, 1, "delay_ms"),
    ("INAPP_RETRY_1_CONCURRENCY", Channel.INAPP, 1, "concurrency"),
    ("INAPP_RETRY_1_MAX_ATTEMPTS", Channel.INAPP, 1, "attempts"),
    ("INAPP_RETRY_2_DELAY", Channel.INAPP, 2, "delay_ms"),
    ("INAPP_RETRY_2_CONCURRENCY", Channel.INAPP, 2, "concurrency"),
    ("INAPP_RETRY_2_MAX_ATTEMPTS", Channel.INAPP, 2, "attempts"),
    ("INAPP_DLQ_CONCURRENCY", Channel.INAPP, 3, "concurrency"),
    ("HERALD_WEBHOOK_MAX_ATTEMPTS", Channel.WEBHOOK, 0, "attempts"),
    ("HERALD_WEBHOOK_QUEUE_CONCURRENCY", Channel.WEBHOOK, 0, "concurrency"),
    ("HERALD_WEBHOOK_RETRY_1_DELAY", Channel.WEBHOOK, 1, "delay_ms"),
    ("HERALD_WEBHOOK_RETRY_1_MAX_ATTEMPTS", Channel.WEBHOOK, 1, "attempts"),
    ("HERALD_WEBHOOK_RETRY_1_CONCURRENCY", Channel.WEBHOOK, 1, "concurrency"),
    ("HERALD_WEBHOOK_RETRY_2_DELAY", Channel.WEBHOOK, 2, "delay_ms"),
    ("HERALD_WEBHOOK_RETRY_2_MAX_ATTEMPTS", Channel.WEBHOOK, 2, "attempts"),
    ("HERALD_WEBHOOK_RETRY_2_CONCURRENCY", Channel.WEBHOOK, 2, "concurrency"),
    ("HERALD_WEBHOOK_DLQ_CONCURRENCY", Channel.WEBHOOK, 3, "concurrency"),
]


def rows(settings: Settings, channel: Channel) -> list[tuple[str, int, int, int]]:
    return [(t.queue, t.attempts, t.delay_ms, t.concurrency) for t in ladder(settings, channel)]


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No ladder variable from the environment, and no `.env` (the working directory's)."""
    monkeypatch.chdir(tmp_path)
    for name, field in Settings.model_fields.items():
        for var in (name.upper(), str(field.validation_alias or "")):
            if var:
                monkeypatch.delenv(var, raising=False)


class TestDefaults:
    @pytest.mark.parametrize("channel", list(Channel))
    def test_each_channels_tiers(self, channel: Channel) -> None:
        settings = load_settings()
        assert rows(settings, channel) == DEFAULTS[channel]
        tiers = ladder(settings, channel)
        assert [t.index for t in tiers] == [0, 1, 2, 3]
        assert [t.is_dead_letter for t in tiers] == [False, False, False, True]

    def test_every_channel_has_a_ladder(self) -> None:
        assert set(load_settings().ladders) == {c.value for c in Channel}

    def test_total_attempts(self) -> None:
        settings = load_settings()
        assert {c: total_attempts(settings, c) for c in Channel} == {
            Channel.EMAIL: 8,
            Channel.INAPP: 8,
            Channel.WEBHOOK: 9,
        }

    def test_all_queue_names(self) -> None:
        assert all_queue_names(load_settings()) == [
            f"{main}{tier}"
            for main in ("mail", "inapp", "webhook")
            for tier in ("", "-retry-1", "-retry-2", "-dlq")
        ]


class TestEnvironmentNames:
    @pytest.mark.parametrize(("var", "channel", "index", "attribute"), DOCUMENTED)
    def test_a_documented_variable_reaches_its_tier_alone(
        self,
        monkeypatch: pytest.MonkeyPatch,
        var: str,
        channel: Channel,
        index: int,
        attribute: str,
    ) -> None:
        monkeypatch.setenv(var, "7777")
        settings = load_settings()
        changed = [list(row) for row in DEFAULTS[channel]]
        changed[index][ROW.index(attribute)] = 7777
        for c in Channel:
            expected = changed if c is channel else DEFAULTS[c]
            assert [list(row) for row in rows(settings, c)] == [list(row) for row in expected]

    def test_every_ladder_field_is_documented(self) -> None:
        """A ladder setting added without a documented variable (or one dropped) shows here."""
        ladder_fields = {
            str(f.validation_alias or name.upper())
            for name, f in Settings.model_fields.items()
            if name.endswith(("_delay", "_concurrency", "_max_attempts"))
            and name not in ("backoff_delay", "digest_concurrency", "ws_max_reconnect_attempts")
        }
        assert ladder_fields == {var for var, *_ in DOCUMENTED}

    @pytest.mark.parametrize(
        ("var", "channel", "index", "attribute"),
        [
            ("MAIL_RETRY_1_MAX_ATTEMPTS", Channel.EMAIL, 1, "attempts"),
            ("WEBHOOK_RETRY_2_DELAY", Channel.WEBHOOK, 2, "delay_ms"),
        ],
    )
    def test_the_field_name_without_herald_prefix_works_too(
        self,
        monkeypatch: pytest.MonkeyPatch,
        var: str,
        channel: Channel,
        index: int,
        attribute: str,
    ) -> None:
        monkeypatch.setenv(var, "6")
        assert getattr(ladder(load_settings(), channel)[index], attribute) == 6

    def test_a_dot_env_file_reaches_the_ladders(self, tmp_path: Path) -> None:
        (tmp_path / ".env").write_text("RETRY_2_DELAY=1234\nHERALD_WEBHOOK_DLQ_CONCURRENCY=4\n")
        settings = load_settings()
        assert ladder(settings, Channel.EMAIL)[2].delay_ms == 1234
        assert ladder(settings, Channel.WEBHOOK)[3].concurrency == 4

    def test_keyword_overrides_reach_the_ladders(self) -> None:
        settings = load_settings(retry_1_delay=200, inapp_max_attempts=1, webhook_max_attempts=5)
        assert ladder(settings, Channel.EMAIL)[1].delay_ms == 200
        assert total_attempts(settings, Channel.INAPP) == 6
        assert total_attempts(settings, Channel.WEBHOOK) == 11

    def test_an_invalid_value_is_named_by_its_variable(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("HERALD_WEBHOOK_RETRY_1_DELAY", "-1")
        monkeypatch.setenv("INAPP_DLQ_CONCURRENCY", "0")
        with pytest.raises(SettingsError) as err:
            load_settings()
        assert "HERALD_WEBHOOK_RETRY_1_DELAY='-1'" in str(err.value)
        assert "INAPP_DLQ_CONCURRENCY='0'" in str(err.value)


class TestCache:
    def test_equal_ladders_share_their_tiers(self) -> None:
        first, second = load_settings(), load_settings()
        assert ladder(first, Channel.EMAIL) is ladder(second, Channel.EMAIL)

    def test_a_different_ladder_gets_its_own_tiers(self) -> None:
        changed = load_settings(retry_1_concurrency=9)
        assert ladder(changed, Channel.EMAIL)[1].concurrency == 9
        assert ladder(load_settings(), Channel.EMAIL)[1].concurrency == 3
        assert ladder(changed, Channel.INAPP) is ladder(load_settings(), Channel.INAPP)
