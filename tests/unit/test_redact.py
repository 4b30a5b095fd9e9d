"""The one mask: every secret long enough to be one, in every form it may travel in."""

from __future__ import annotations

from pydantic import SecretStr

from contracts.redact import Redactor, mask, url_forms


def test_every_occurrence_of_every_secret_is_masked() -> None:
    text = "token abcdefgh leaked, abcdefgh again, and s3cr3t-key too"

    assert mask(text, ["abcdefgh", SecretStr("s3cr3t-key")]) == "token *** leaked, *** again, and *** too"


def test_short_values_are_left_alone_since_they_would_mask_ordinary_words() -> None:
    assert mask("a b abcde", ["a", "abcde", ""]) == "a b abcde"


def test_the_placeholder_is_the_callers_choice() -> None:
    assert mask("key=abcdefgh", ["abcdefgh"], placeholder="[redacted]") == "key=[redacted]"


def test_url_forms_cover_what_a_url_makes_of_the_secret() -> None:
    token = "123456:AbC/dEf"

    forms = url_forms(SecretStr(token))

    assert forms == ["123456:AbC/dEf", "123456%3AAbC/dEf", "123456%3AAbC%2FdEf"]
    assert mask("bot123456%3AAbC%2FdEf/sendMessage", forms, "<redacted>") == "bot<redacted>/sendMessage"


def test_a_redactor_holds_its_secrets_and_never_shows_them() -> None:
    redact = Redactor(SecretStr("gateway-token"), "other-secret", placeholder="#")

    assert redact("gateway-token and other-secret") == "# and #"
    assert "gateway-token" not in repr(redact)
