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
    """A message was not delivered.

    - `permanent`: retrying cannot help (5xx replies, a refused login, an unverifiable cert).
    - `setup`: the fault is in the sender's configuration or the server as a whole (login,
      TLS, sender address), not in this recipient: every other message would meet it too, so
      a run stops at once, and the recipient is not blamed for it (no suppression).
    - `throttled`: the server asked us to slow down (421, 454, or a "rate"/"too many" reply).
    - `server_level`: nothing reached the server at all (down, unreachable, not SMTP): the
      message names the server and its settings, not a recipient.
    """

    def __init__(
        self,
        message: str,
        *,
        recipient: str,
        code: int | None = None,
        permanent: bool = False,
        setup: bool = False,
        throttled: bool = False,
    ) -> None:
        self.recipient = recipient
        self.code = code
        self.permanent = permanent
        self.setup = setup
        self.throttled = throttled
        self.server_level = False
        self.attempts = 1  # set by the transport to the attempts it spent
        super().__init__(message)

    @property
    def bounce(self) -> bool:
        """A permanent refusal of this recipient or message: what suppression counts."""
        return self.permanent and not self.setup
