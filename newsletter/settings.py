"""Settings: the only place that reads the environment (`NEWSLETTER_*` variables and `.env`).

One `Settings` object is built at the edge (CLI, scheduler) and passed down; core functions
take plain arguments. Contradictory settings are rejected here, at load time, with a message
that names the variable to change.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from newsletter.errors import ConfigError

ENV_PREFIX = "NEWSLETTER_"
SEND_AT_PATTERN = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
IMPLICIT_TLS_PORT = 465


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
        env_prefix=ENV_PREFIX, env_file=".env", env_file_encoding="utf-8", extra="ignore"
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

    send_at: str = "07:00"
    timezone: str = "UTC"
    max_papers: int = Field(default=10, ge=1, le=100)
    poll_seconds: int = Field(default=60, ge=1)
    # A sentence-transformers model name or local folder for the hybrid ranker, used when the
    # `semantic` extra is installed; "off" (or empty) ranks lexically even then.
    semantic_model: str = "all-MiniLM-L6-v2"

    @field_validator("smtp_host", "smtp_username", "unsubscribe_url", "rate_limit", mode="before")
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
        if self.smtp_ca_file is not None and not self.smtp_ca_file.is_file():
            raise ValueError(f"NEWSLETTER_SMTP_CA_FILE {self.smtp_ca_file} does not exist")
        return self

    @property
    def sender_domain(self) -> str:
        return self.from_address.rpartition("@")[2]

    @property
    def uses_smtp(self) -> bool:
        return self.smtp_host is not None


def load_settings(**overrides: object) -> Settings:
    """Build settings from the environment, turning validation errors into one ConfigError."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            name = "_".join(str(part) for part in error["loc"]).upper()
            label = f"{ENV_PREFIX}{name}: " if name else ""
            problems.append(label + error["msg"].removeprefix("Value error, "))
        raise ConfigError("invalid settings: " + "; ".join(problems)) from None
