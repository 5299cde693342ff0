"""Settings come from NEWSLETTER_* variables and .env; secrets never show; contradictions fail."""

from __future__ import annotations

from pathlib import Path

import pytest

from newsletter.errors import ConfigError
from newsletter.settings import load_settings


def test_defaults_match_the_design() -> None:
    settings = load_settings()
    assert settings.dumps_dir == Path("dumps")
    assert settings.subscribers_file == Path("subscribers.yaml")
    assert settings.database_url == "sqlite:///newsletter.db"
    assert settings.outbox_dir == Path("outbox")
    assert settings.smtp_host is None and not settings.uses_smtp
    assert (settings.smtp_port, settings.smtp_security, settings.smtp_validate_certs) == (587, "starttls", True)
    assert (settings.send_at, settings.timezone, settings.max_papers, settings.poll_seconds) == ("07:00", "UTC", 10, 60)


def test_environment_and_dotenv(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("NEWSLETTER_MAX_PAPERS=4\nNEWSLETTER_SMTP_HOST=mail.example.org\n")
    monkeypatch.setenv("NEWSLETTER_TIMEZONE", "Europe/Berlin")
    settings = load_settings()
    assert settings.max_papers == 4
    assert settings.smtp_host == "mail.example.org" and settings.uses_smtp
    assert settings.timezone == "Europe/Berlin"


def test_password_is_never_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEWSLETTER_SMTP_USERNAME", "mailer")
    monkeypatch.setenv("NEWSLETTER_SMTP_PASSWORD", "hunter2-secret")
    settings = load_settings()
    assert "hunter2-secret" not in repr(settings)
    assert "hunter2-secret" not in str(settings.model_dump())
    assert settings.smtp_password is not None
    assert settings.smtp_password.get_secret_value() == "hunter2-secret"


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("NEWSLETTER_TIMEZONE", "Mars/Olympus", "NEWSLETTER_TIMEZONE: 'Mars/Olympus' is not a known time zone"),
        ("NEWSLETTER_SEND_AT", "7h30", "NEWSLETTER_SEND_AT: '7h30' is not a time of day as HH:MM"),
        ("NEWSLETTER_SMTP_SECURITY", "ssl", "NEWSLETTER_SMTP_SECURITY"),
        ("NEWSLETTER_MAX_PAPERS", "0", "NEWSLETTER_MAX_PAPERS"),
    ],
)
def test_bad_values_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, message: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError, match="invalid settings") as caught:
        load_settings()
    assert message in str(caught.value)


def test_contradictions_are_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEWSLETTER_SMTP_USERNAME", "mailer")
    with pytest.raises(ConfigError, match="NEWSLETTER_SMTP_PASSWORD is not"):
        load_settings()
    monkeypatch.delenv("NEWSLETTER_SMTP_USERNAME")
    monkeypatch.setenv("NEWSLETTER_SMTP_PORT", "465")
    with pytest.raises(ConfigError, match="NEWSLETTER_SMTP_SECURITY=tls"):
        load_settings()


def test_a_ca_file_never_comes_with_verification_off(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("not read here")
    monkeypatch.setenv("NEWSLETTER_SMTP_CA_FILE", str(ca))
    monkeypatch.setenv("NEWSLETTER_SMTP_VALIDATE_CERTS", "false")
    with pytest.raises(ConfigError, match="choose one"):
        load_settings()


# newsletter serve: public URL, link key, serve --------------------------------------------------
LINK_KEY = "serve-settings-secret-0123456789"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"public_url": "http://news.example.org", "secret_key": LINK_KEY},
         "NEWSLETTER_PUBLIC_URL is http:// for news.example.org: links carry personal tokens"),
        ({"public_url": "ftp://news.example.org", "secret_key": LINK_KEY}, "NEWSLETTER_PUBLIC_URL must be the https://"),
        ({"public_url": "https://news.example.org/?x=1", "secret_key": LINK_KEY}, "NEWSLETTER_PUBLIC_URL must be the https://"),
        ({"public_url": "https://user@news.example.org", "secret_key": LINK_KEY}, "NEWSLETTER_PUBLIC_URL must be the https://"),
        ({"public_url": "https://news.example.org/a b", "secret_key": LINK_KEY}, "NEWSLETTER_PUBLIC_URL must be the https://"),
        ({"public_url": "https://news.example.org"}, "NEWSLETTER_PUBLIC_URL is set but NEWSLETTER_SECRET_KEY is not"),
        ({"public_url": "https://news.example.org", "secret_key": "short"},
         "NEWSLETTER_SECRET_KEY must be at least 16 characters"),
        ({"public_url": "https://news.example.org", "secret_key": LINK_KEY,
          "unsubscribe_url": "https://example.org/unsubscribe"},
         "NEWSLETTER_PUBLIC_URL and NEWSLETTER_UNSUBSCRIBE_URL are both set"),
        ({"secret_key": LINK_KEY, "unsubscribe_secret": LINK_KEY + "x"},
         "NEWSLETTER_SECRET_KEY and NEWSLETTER_UNSUBSCRIBE_SECRET are both set and differ"),
    ],
)
def test_serve_settings_are_checked(values: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(**values)
    assert message in str(caught.value)
    assert LINK_KEY not in str(caught.value)


@pytest.mark.parametrize("url", ["http://127.0.0.1:8000", "http://localhost:8000/", "http://[::1]:8080", "http://127.1.2.3"])
def test_plain_http_is_accepted_for_loopback_hosts(url: str) -> None:
    settings = load_settings(public_url=url, secret_key=LINK_KEY)
    assert settings.public_url == url.rstrip("/")
    assert settings.link_settings.serving


def test_the_older_secret_name_is_the_same_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEWSLETTER_PUBLIC_URL", "https://news.example.org/digest/")
    monkeypatch.setenv("NEWSLETTER_UNSUBSCRIBE_SECRET", LINK_KEY)
    monkeypatch.setenv("NEWSLETTER_SERVE", "true")
    settings = load_settings()
    assert settings.public_url == "https://news.example.org/digest"
    assert settings.link_key == LINK_KEY and settings.serve is True
    assert (settings.serve_host, settings.serve_port) == ("127.0.0.1", 8000)
    assert LINK_KEY not in repr(settings) and LINK_KEY not in repr(settings.link_settings)
    assert load_settings(secret_key=LINK_KEY, unsubscribe_secret=LINK_KEY).link_key == LINK_KEY


# unknown names (issue 11: a misspelled setting was silently ignored) -------------------------
def test_an_unknown_variable_in_the_environment_names_the_closest_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEWSLETTER_SMTP_HOSTNAME", "mail.example.org")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert str(caught.value) == (
        "unknown setting NEWSLETTER_SMTP_HOSTNAME in the environment: did you mean NEWSLETTER_SMTP_HOST?"
    )


def test_an_unknown_name_in_dotenv_gives_its_line(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("# mail\nNEWSLETTER_SMTP_HOST=mail.example.org\n\nNEWSLETTER_MAXPAPERS=4\n")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert str(caught.value) == "unknown setting NEWSLETTER_MAXPAPERS in .env:4: did you mean NEWSLETTER_MAX_PAPERS?"


def test_a_name_like_no_setting_says_where_to_look(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEWSLETTER_ZZZ", "1")
    with pytest.raises(ConfigError, match="unknown setting NEWSLETTER_ZZZ in the environment: see the README"):
        load_settings()


def test_known_names_in_any_case_are_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("newsletter_max_papers", "3")
    assert load_settings().max_papers == 3


def test_retry_catch_up_and_log_settings_have_their_defaults() -> None:
    settings = load_settings()
    assert (settings.retry_min_seconds, settings.retry_max_seconds) == (300, 3600)
    assert (settings.retry_lifetime_hours, settings.catch_up_hours) == (12, 6)
    assert settings.log_format == "text"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"NEWSLETTER_RETRY_MIN_SECONDS": "600", "NEWSLETTER_RETRY_MAX_SECONDS": "60"},
         "NEWSLETTER_RETRY_MIN_SECONDS (600) is more than NEWSLETTER_RETRY_MAX_SECONDS (60)"),
        ({"NEWSLETTER_RETRY_MIN_SECONDS": "0"}, "NEWSLETTER_RETRY_MIN_SECONDS: Input should be greater than 0"),
        ({"NEWSLETTER_RETRY_LIFETIME_HOURS": "-1"}, "NEWSLETTER_RETRY_LIFETIME_HOURS: Input should be greater than 0"),
        ({"NEWSLETTER_CATCH_UP_HOURS": "-1"}, "NEWSLETTER_CATCH_UP_HOURS: Input should be greater than or equal to 0"),
        ({"NEWSLETTER_LOG_FORMAT": "xml"}, "NEWSLETTER_LOG_FORMAT: Input should be 'text' or 'json'"),
    ],
)
def test_bad_retry_and_log_settings_are_rejected(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], message: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match="invalid settings") as caught:
        load_settings()
    assert message in str(caught.value)
