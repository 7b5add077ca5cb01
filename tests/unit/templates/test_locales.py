"""herald.templates.locales: language tags, and which locales' templates an email tries in turn
(tests/templates/test_templates.py checks the chain of `de-CH` and `zh-Hant-TW`)."""

from __future__ import annotations

from herald.templates.locales import MAX_LOCALE, canonical, chain, is_locale


def test_canonical_casing() -> None:
    assert canonical("DE_ch") == "de-CH"
    assert canonical("zh_hant_tw") == "zh-Hant-TW"  # a script, then a region
    assert canonical("es-419") == "es-419"  # a numeric region
    assert canonical("de-CH-1996") == "de-CH-1996"  # a variant stays lower case


def test_what_counts_as_a_locale() -> None:
    assert is_locale("en") and is_locale("pt_BR") and is_locale("gsw-CH")
    assert not is_locale("e") and not is_locale("english") and not is_locale("en--US")
    assert not is_locale("en-" + "a" * 9)  # a subtag of 9
    too_long = "en" + "-abcdefgh" * 4  # each subtag fine, the whole too long
    assert len(too_long) > MAX_LOCALE and not is_locale(too_long)


def test_the_default_comes_last_once_in_its_canonical_casing() -> None:
    assert chain("en-us", "en") == ("en-US", "en")
    assert chain("fr-CA", "EN_gb") == ("fr-CA", "fr", "en-GB")
    assert chain("en-GB", "en-gb") == ("en-GB", "en")
