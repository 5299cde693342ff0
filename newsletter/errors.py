"""The exceptions the operator sees.

    NewsletterError                 base: the CLI prints its message as one line and exits 1
    ├── ConfigError                 settings that cannot work together, or a missing file
    ├── SubscribersError            the subscribers file cannot be read at all (file, line)
    ├── DumpError                   a dump cannot be parsed (file, line, reason)
    └── DeliveryError               a message could not be delivered (recipient, SMTP code)

Anything else escaping to the CLI is a bug and keeps its traceback.
"""

from __future__ import annotations


class NewsletterError(Exception):
    """Base class for errors written for the operator: what failed and what to do."""


class ConfigError(NewsletterError):
    """Settings are invalid, contradictory or point at something missing."""


class SubscribersError(NewsletterError):
    """The subscribers file as a whole is unusable (missing, not YAML, wrong shape)."""

    def __init__(self, message: str, *, path: str, line: int | None = None) -> None:
        self.path = path
        self.line = line
        where = f"{path}:{line}" if line else path
        super().__init__(f"{where}: {message}")


class DumpError(NewsletterError):
    """A dump file cannot be parsed; it is set aside and the others go on."""

    def __init__(self, reason: str, *, path: str = "<dump>", line: int | None = None) -> None:
        self.path = path
        self.line = line
        self.reason = reason
        where = f"{path}:{line}" if line else path
        super().__init__(f"{where}: {reason}")

    def at(self, path: str) -> DumpError:
        """The same error, naming the file it came from (parsers see text, not paths)."""
        return DumpError(self.reason, path=path, line=self.line)


class DeliveryError(NewsletterError):
    """A message was not delivered. `permanent` is True for 5xx replies."""

    def __init__(
        self,
        message: str,
        *,
        recipient: str,
        code: int | None = None,
        permanent: bool = False,
    ) -> None:
        self.recipient = recipient
        self.code = code
        self.permanent = permanent
        super().__init__(message)
