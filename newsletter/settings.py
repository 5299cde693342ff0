"""Settings: the only place that reads the environment (`NEWSLETTER_*` variables and `.env`).

One `Settings` object is built at the edge (CLI, scheduler) and passed down; core functions
take plain arguments. Contradictory settings are rejected here, at load time, with a message
that names the variable to change. A `NEWSLETTER_*` name that is not a setting (a typo in the
environment or in `.env`) is an error naming the closest real one: silently ignoring it would
leave the operator believing it took effect.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from dotenv import dotenv_values
from pydantic_settings import BaseSettings, SettingsConfigDict

from newsletter.errors import ConfigError
from newsletter.links import LinkSettings
from newsletter.signing import DkimKey, check_dns_name, read_private_key

ENV_PREFIX = "NEWSLETTER_"
ENV_FILE = ".env"
SEND_AT_PATTERN = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
IMPLICIT_TLS_PORT = 465
MIN_SECRET_LENGTH = 16
LOOPBACK_NAMES = ("localhost",)
BROKER_SCHEMES = ("redis", "rediss", "amqp", "amqps", "pyamqp")
SECRET_HINT = 'e.g. the output of: python3 -c "import secrets; print(secrets.token_hex(32))"'


def parse_send_at(value: str) -> tuple[int, int]:
    """`"07:30"` -> (7, 30); raises ValueError with an operator-readable message."""
    match = SEND_AT_PATTERN.match(value.strip())
    if not match:
        raise ValueError(f"{value!r} is not a time of day as HH:MM (24-hour), e.g. \"07:30\"")
    return int(match.group(1)), int(match.group(2))


def check_timezone(value: str) -> str:
    """Return the name if it is an IANA time zone, else raise ValueError."""
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"{value!r} is not a known time zone; use an IANA name such as \"Europe/Berlin\""
        ) from None
    return value


class Settings(BaseSettings):
    """Everything the operator can set. Names map to `NEWSLETTER_<NAME>` variables."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_file=ENV_FILE, env_file_encoding="utf-8", extra="ignore"
    )

    dumps_dir: Path = Path("dumps")
    subscribers_file: Path = Path("subscribers.yaml")
    database_url: str = "sqlite:///newsletter.db"
    outbox_dir: Path = Path("outbox")
    preview_dir: Path = Path("preview")

    smtp_host: str | None = None
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_security: Literal["starttls", "tls", "none"] = "starttls"
    smtp_validate_certs: bool = True
    smtp_ca_file: Path | None = None
    smtp_timeout: float = Field(default=30.0, gt=0)
    smtp_connections: int = Field(default=4, ge=1, le=64)
    smtp_messages_per_connection: int = Field(default=100, ge=1)
    rate_limit: float | None = Field(default=None, gt=0)  # messages per second; None: unlimited
    max_error_rate: float = Field(default=0.2, gt=0, le=1)
    suppress_after: int = Field(default=3, ge=1)

    from_address: str = "digest@newsletter.localhost"
    from_name: str = "Research digest"
    unsubscribe_url: str | None = None
    unsubscribe_secret: SecretStr | None = None  # the same key as secret_key, by its older name

    # `newsletter serve`: where it is reachable, the key of every link token, and whether
    # `newsletter run` serves too (on serve_host:serve_port).
    public_url: str | None = None
    secret_key: SecretStr | None = None
    serve: bool = False
    serve_host: str = "127.0.0.1"
    serve_port: int = Field(default=8000, ge=1, le=65535)

    dkim_key_file: Path | None = None
    dkim_selector: str | None = None
    dkim_domain: str | None = None
    _dkim_private_key: bytes | None = PrivateAttr(default=None)  # read once, at load time

    send_at: str = "07:00"
    timezone: str = "UTC"
    max_papers: int = Field(default=10, ge=1, le=100)
    poll_seconds: int = Field(default=60, ge=1)
    # Deferred delivery (issue 11): a digest that meets a transient failure is retried with
    # exponential backoff from RETRY_MIN_SECONDS up to RETRY_MAX_SECONDS between attempts,
    # until RETRY_LIFETIME_HOURS after its send time; then it is marked failed ("expired").
    retry_min_seconds: int = Field(default=300, gt=0)
    retry_max_seconds: int = Field(default=3600, gt=0)
    retry_lifetime_hours: float = Field(default=12, gt=0)
    # A send time missed while the service was down is caught up once if the service starts
    # within this many hours after it; 0 never catches up.
    catch_up_hours: float = Field(default=6, ge=0)
    # text: one plain line per event (Rich only on a terminal); json: one JSON object per line.
    log_format: Literal["text", "json"] = "text"
    # Processes that plan and compose digests beside the sending one (big lists only);
    # unset: one per core but one.
    workers: int | None = Field(default=None, ge=0, le=64)
    # A sentence-transformers model name or local folder for the hybrid ranker, used when the
    # `semantic` extra is installed; "off" (or empty) ranks lexically even then.
    semantic_model: str = "all-MiniLM-L6-v2"
    # Past one machine (issue 14): a Celery broker (redis://... or amqp://...) shared by the
    # scheduler, `send` and `newsletter worker` processes; unset: everything in this process.
    broker_url: SecretStr | None = None
    # The queue the shards go through: each installation sharing a broker needs its own.
    broker_queue: str = Field(default="newsletter", pattern=r"^[A-Za-z0-9_.:-]{1,100}$")
    shard_size: int = Field(default=500, ge=1)  # subscribers per task a worker takes
    # The longest one shard may take: the Redis broker hands an unacknowledged shard to another
    # worker after this long, and a digest a worker claimed is its own for this long.
    shard_timeout: int = Field(default=3600, ge=5)

    @field_validator(
        "smtp_host", "smtp_username", "unsubscribe_url", "unsubscribe_secret",
        "public_url", "secret_key", "dkim_key_file", "dkim_selector", "dkim_domain", "rate_limit", "broker_url",
        mode="before",
    )
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("send_at")
    @classmethod
    def _valid_send_at(cls, value: str) -> str:
        parse_send_at(value)
        return value.strip()

    @field_validator("timezone")
    @classmethod
    def _valid_timezone(cls, value: str) -> str:
        return check_timezone(value)

    @field_validator("dkim_selector", "dkim_domain")
    @classmethod
    def _dns_name(cls, value: str | None) -> str | None:
        return None if value is None else check_dns_name(value.strip())  # DNS labels, both

    @field_validator("from_address", "from_name")
    @classmethod
    def _single_line(cls, value: str) -> str:
        if any(ch in value for ch in "\r\n\0"):
            raise ValueError("must be a single line (no line breaks)")
        return value.strip()

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if "@" not in self.from_address:
            raise ValueError("NEWSLETTER_FROM_ADDRESS must be an email address")
        if self.smtp_username and self.smtp_password is None:
            raise ValueError(
                "NEWSLETTER_SMTP_USERNAME is set but NEWSLETTER_SMTP_PASSWORD is not; set both or neither"
            )
        if self.smtp_ca_file is not None and not self.smtp_validate_certs:
            raise ValueError(
                "NEWSLETTER_SMTP_CA_FILE trusts a CA for verification, but "
                "NEWSLETTER_SMTP_VALIDATE_CERTS=false turns verification off; choose one"
            )
        if self.smtp_port == IMPLICIT_TLS_PORT and self.smtp_security == "starttls":
            raise ValueError(
                "port 465 speaks implicit TLS: set NEWSLETTER_SMTP_SECURITY=tls (or use port 587)"
            )
        if self.retry_min_seconds > self.retry_max_seconds:
            raise ValueError(
                f"NEWSLETTER_RETRY_MIN_SECONDS ({self.retry_min_seconds}) is more than "
                f"NEWSLETTER_RETRY_MAX_SECONDS ({self.retry_max_seconds}); the first wait cannot "
                "exceed the longest one"
            )
        if self.smtp_ca_file is not None and not self.smtp_ca_file.is_file():
            raise ValueError(f"NEWSLETTER_SMTP_CA_FILE {self.smtp_ca_file} does not exist")
        self._check_broker()
        self._check_link_key()
        self._check_unsubscribe()
        self._check_public_url()
        self._load_dkim_key()
        return self

    def _check_broker(self) -> None:
        if self.broker_url is None:
            return
        scheme = urlsplit(self.broker_url.get_secret_value().strip()).scheme
        if scheme not in BROKER_SCHEMES:
            raise ValueError(
                f"NEWSLETTER_BROKER_URL must be a Redis or RabbitMQ URL ({', '.join(BROKER_SCHEMES)}://...), "
                f"not {scheme or 'a URL without a scheme'}:// (e.g. redis://127.0.0.1:6379/0)"
            )

    @property
    def broker(self) -> str | None:
        """The broker URL, or None: everything runs in this process."""
        return self.broker_url.get_secret_value().strip() if self.broker_url is not None else None

    def _check_link_key(self) -> None:
        for name, secret in (("SECRET_KEY", self.secret_key), ("UNSUBSCRIBE_SECRET", self.unsubscribe_secret)):
            if secret is not None and len(secret.get_secret_value()) < MIN_SECRET_LENGTH:
                raise ValueError(
                    f"NEWSLETTER_{name} must be at least {MIN_SECRET_LENGTH} characters, {SECRET_HINT}"
                )
        if (
            self.secret_key is not None
            and self.unsubscribe_secret is not None
            and self.secret_key.get_secret_value() != self.unsubscribe_secret.get_secret_value()
        ):
            raise ValueError(
                "NEWSLETTER_SECRET_KEY and NEWSLETTER_UNSUBSCRIBE_SECRET are both set and differ: they "
                "name the same key (the second is its older name); keep NEWSLETTER_SECRET_KEY only"
            )

    def _check_unsubscribe(self) -> None:
        if self.unsubscribe_url is None:
            return
        parts = urlsplit(self.unsubscribe_url)
        unsafe = any(char in self.unsubscribe_url for char in ' <>"\'\\\t\r\n')
        if parts.scheme != "https" or not parts.netloc or parts.fragment or unsafe:
            raise ValueError(
                "NEWSLETTER_UNSUBSCRIBE_URL must be an https:// URL without spaces, quotes, <> or a #fragment "
                "(one-click unsubscribe, RFC 8058, is https only)"
            )
        if self.link_key is None:
            raise ValueError(
                "NEWSLETTER_UNSUBSCRIBE_URL is set but NEWSLETTER_SECRET_KEY is not: "
                f"links carry a token made with that key; set it, {SECRET_HINT}"
            )

    def _check_public_url(self) -> None:
        if self.public_url is None:
            return
        url = self.public_url.strip().rstrip("/")
        parts = urlsplit(url)
        unsafe = any(char in url for char in ' <>"\'\\\t\r\n,')
        if (
            parts.scheme not in ("https", "http") or not parts.hostname or parts.query or parts.fragment
            or parts.username is not None or unsafe or not url.isascii()
        ):
            raise ValueError(
                "NEWSLETTER_PUBLIC_URL must be the https:// base URL where `newsletter serve` is "
                "reachable, e.g. https://news.example.org (no query, #fragment, login, spaces or quotes)"
            )
        if parts.scheme == "http" and not _is_loopback(parts.hostname):
            raise ValueError(
                f"NEWSLETTER_PUBLIC_URL is http:// for {parts.hostname}: links carry personal tokens, so "
                "plain http is accepted only for a loopback host (127.0.0.1, ::1, localhost); "
                "put serve behind a TLS reverse proxy and give its https:// URL"
            )
        if self.unsubscribe_url is not None:
            raise ValueError(
                "NEWSLETTER_PUBLIC_URL and NEWSLETTER_UNSUBSCRIBE_URL are both set: with a public URL "
                "`newsletter serve` answers the unsubscribe links; unset NEWSLETTER_UNSUBSCRIBE_URL"
            )
        if self.link_key is None:
            raise ValueError(
                "NEWSLETTER_PUBLIC_URL is set but NEWSLETTER_SECRET_KEY is not: every link carries a "
                f"token made with that key; set it, {SECRET_HINT}"
            )
        self.public_url = url

    @property
    def link_key(self) -> str | None:
        """The key of link tokens: NEWSLETTER_SECRET_KEY, or its older name."""
        secret = self.secret_key or self.unsubscribe_secret
        return secret.get_secret_value() if secret is not None else None

    @property
    def link_settings(self) -> LinkSettings:
        """Where the digest's links point (see `newsletter.links`)."""
        return LinkSettings(
            public_url=self.public_url, key=self.link_key or "", external_unsubscribe_url=self.unsubscribe_url
        )

    def _load_dkim_key(self) -> None:
        if self.dkim_key_file is None:
            if self.dkim_selector or self.dkim_domain:
                raise ValueError(
                    "NEWSLETTER_DKIM_SELECTOR/NEWSLETTER_DKIM_DOMAIN are set but "
                    "NEWSLETTER_DKIM_KEY_FILE is not; set the key file too, or neither"
                )
            return
        if not self.dkim_selector:
            raise ValueError(
                "NEWSLETTER_DKIM_KEY_FILE is set but NEWSLETTER_DKIM_SELECTOR is not: name the "
                "selector under which the public key is published (<selector>._domainkey.<domain>)"
            )
        try:
            self._dkim_private_key = read_private_key(self.dkim_key_file)
        except ValueError as exc:
            raise ValueError(f"NEWSLETTER_DKIM_KEY_FILE: {exc}") from None

    @property
    def dkim_key(self) -> DkimKey | None:
        """The signing key, selector and domain (the From domain unless set); None: no DKIM."""
        if self._dkim_private_key is None or self.dkim_selector is None:
            return None
        domain = self.dkim_domain or self.sender_domain
        return DkimKey(self.dkim_selector, domain.lower(), self._dkim_private_key)

    @property
    def sender_domain(self) -> str:
        return self.from_address.rpartition("@")[2]

    @property
    def uses_smtp(self) -> bool:
        return self.smtp_host is not None


def _is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def setting_names() -> list[str]:
    """Every `NEWSLETTER_*` variable name the operator can set."""
    return sorted(ENV_PREFIX + name.upper() for name in Settings.model_fields)


def check_names(names: dict[str, str], known: list[str] | None = None) -> None:
    """Raise ConfigError for the first name (found where `names` says) that is not a setting.

    `names` maps each `NEWSLETTER_*` name to where it was found ("the environment", ".env:3").
    Names compare case-insensitively, as pydantic-settings reads them.
    """
    known = known if known is not None else setting_names()
    for name, where in names.items():
        upper = name.upper()
        if upper in known:
            continue
        # Compare what follows the prefix: the shared prefix would make anything look close.
        suffixes = [k.removeprefix(ENV_PREFIX) for k in known]
        close = difflib.get_close_matches(upper.removeprefix(ENV_PREFIX), suffixes, n=1, cutoff=0.6)
        hint = (
            f"did you mean {ENV_PREFIX}{close[0]}?" if close
            else "see the README for the settings there are"
        )
        raise ConfigError(f"unknown setting {name} in {where}: {hint}")


def _names_in_use(env_file: Path) -> dict[str, str]:
    found: dict[str, str] = {}
    if env_file.is_file():
        try:
            lines = env_file.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read {env_file}: {exc}") from None
        keys = {key.upper() for key in dotenv_values(env_file)}
        for number, line in enumerate(lines, start=1):
            key = line.strip().removeprefix("export ").split("=", 1)[0].strip()
            if key.upper().startswith(ENV_PREFIX) and key.upper() in keys:
                found.setdefault(key, f"{env_file}:{number}")
    for name in sorted(os.environ):
        if name.upper().startswith(ENV_PREFIX):
            found[name] = "the environment"
    return found


def requested_log_format() -> str:
    """NEWSLETTER_LOG_FORMAT as set (environment first, then .env), read before the settings
    are validated, so that even an invalid-settings error is written in the chosen format."""
    name = ENV_PREFIX + "LOG_FORMAT"
    value = next((v for k, v in os.environ.items() if k.upper() == name), None)
    if value is None and Path(ENV_FILE).is_file():
        try:
            found = {k.upper(): v for k, v in dotenv_values(ENV_FILE).items()}
        except (OSError, UnicodeDecodeError):
            found = {}
        value = found.get(name)
    return "json" if (value or "").strip().lower() == "json" else "text"


def load_settings(**overrides: object) -> Settings:
    """Build settings from the environment, turning validation errors into one ConfigError."""
    check_names(_names_in_use(Path(ENV_FILE)))
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            name = "_".join(str(part) for part in error["loc"]).upper()
            label = f"{ENV_PREFIX}{name}: " if name else ""
            problems.append(label + error["msg"].removeprefix("Value error, "))
        raise ConfigError("invalid settings: " + "; ".join(problems)) from None
