"""The commands as an operator runs them: `newsletter send` mails a digest to aiosmtpd,
`newsletter serve` (a subprocess on a free loopback port) answers its links, and
`newsletter unsubscribe` / `resubscribe` change the same store."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from newsletter.store import Store
from smtp_servers import CLIENT_FROM, SmtpServer, free_port
from test_cli import newsletter
from web_servers import EXAMPLE_DUMPS, LOOPBACK, SECRET_KEY, links_in, one_click, request

STARTUP_SECONDS = 30


@pytest.fixture
def operator_env(tmp_path: Path, smtp: SmtpServer) -> dict[str, str]:
    shutil.copytree(EXAMPLE_DUMPS, tmp_path / "dumps")
    (tmp_path / "subscribers.yaml").write_text(
        "subscribers:\n"
        "  - email: ada@example.org\n    keywords: [language model, reasoning]\n    max_papers: 3\n"
        "  - email: bob@example.org\n    keywords: [reasoning]\n    max_papers: 2\n"
    )
    return {
        "NEWSLETTER_DATABASE_URL": f"sqlite:///{tmp_path / 'state.db'}",
        "NEWSLETTER_SMTP_HOST": smtp.host,
        "NEWSLETTER_SMTP_PORT": str(smtp.port),
        "NEWSLETTER_SMTP_SECURITY": "none",
        "NEWSLETTER_FROM_ADDRESS": CLIENT_FROM,
        "NEWSLETTER_PUBLIC_URL": f"http://{LOOPBACK}:{free_port()}",
        "NEWSLETTER_SECRET_KEY": SECRET_KEY,
    }


@pytest.fixture
def serving(tmp_path: Path, operator_env: dict[str, str]) -> Iterator[str]:
    """`newsletter serve` on the public URL's port, until the test ends (then SIGTERM)."""
    base = operator_env["NEWSLETTER_PUBLIC_URL"]
    environment = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    environment.update(operator_env)
    process = subprocess.Popen(
        [sys.executable, "-m", "newsletter", "serve", "--port", base.rsplit(":", 1)[1]],
        cwd=tmp_path, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            try:
                if request("GET", f"{base}/healthz").status == 200:
                    break
            except OSError:
                pass
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "newsletter serve did not answer /healthz"
            time.sleep(0.1)
        yield base
    finally:
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert "Traceback" not in err


def test_a_digest_link_unsubscribes_through_the_real_command(
    tmp_path: Path, smtp: SmtpServer, operator_env: dict[str, str], serving: str
) -> None:
    sent = newsletter("send", cwd=tmp_path, **operator_env)
    assert sent.returncode == 0, sent.stderr
    links = links_in(smtp.handler.to("ada@example.org")[0].message)
    assert links.list_unsubscribe.startswith(f"{serving}/u/")
    store = Store(operator_env["NEWSLETTER_DATABASE_URL"])
    assert request("GET", links.list_unsubscribe).status == 200
    assert store.unsubscribed_addresses() == set()  # a GET (a link scanner) changes nothing
    assert one_click(links.list_unsubscribe).status == 200
    assert store.unsubscribed_addresses() == {"ada@example.org"}
    again = newsletter("send", cwd=tmp_path, **operator_env)
    assert again.returncode == 0, again.stderr
    ada_row = next(line for line in again.stdout.splitlines() if "ada@example.org" in line)
    assert "skipped" in ada_row and "unsubscribed" in ada_row
    assert len(smtp.handler.to("ada@example.org")) == 1
    assert request("GET", links.view).status == 200

    back = newsletter("resubscribe", "Ada@Example.org", cwd=tmp_path, **operator_env)
    assert back.returncode == 0 and "Ada@example.org is subscribed again" in back.stdout
    assert store.unsubscribed_addresses() == set()
    gone = newsletter("unsubscribe", "bob@example.org", cwd=tmp_path, **operator_env)
    assert gone.returncode == 0 and "bob@example.org is now unsubscribed" in gone.stdout
    assert store.unsubscribed_addresses() == {"bob@example.org"}
    store.close()


def test_serve_on_a_port_in_use_is_one_error_line(tmp_path: Path, operator_env: dict[str, str], serving: str) -> None:
    port = serving.rsplit(":", 1)[1]
    result = newsletter("serve", "--port", port, cwd=tmp_path, **operator_env)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith(f"Error: cannot listen on 127.0.0.1:{port} (")
    assert "Traceback" not in result.stderr


def test_unsubscribe_refuses_what_is_not_an_address(tmp_path: Path) -> None:
    result = newsletter("unsubscribe", "not-an-address", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.startswith("Error: 'not-an-address' is not an email address")
