"""`python -m newsletter` is the `newsletter` command."""

from newsletter.cli import app

app(prog_name="newsletter")
