"""The workers' command line as an operator meets it, without a broker: one Error line each."""

from __future__ import annotations

from pathlib import Path

from test_cli import newsletter


def _subscribers(tmp_path: Path) -> None:
    (tmp_path / "dumps").mkdir()
    (tmp_path / "subscribers.yaml").write_text(
        "subscribers:\n  - email: ada@example.org\n    keywords: [reasoning]\n", encoding="utf-8"
    )


def test_a_broker_url_that_is_not_redis_or_rabbitmq_is_one_error(tmp_path: Path) -> None:
    result = newsletter("check", cwd=tmp_path, NEWSLETTER_BROKER_URL="http://queue.example/")
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "Error: invalid settings: NEWSLETTER_BROKER_URL must be a Redis or RabbitMQ URL "
        "(redis, rediss, amqp, amqps, pyamqp://...), not http:// (e.g. redis://127.0.0.1:6379/0)"
    )


def test_a_worker_without_a_broker_url_is_one_error(tmp_path: Path) -> None:
    result = newsletter("worker", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().startswith("Error: NEWSLETTER_BROKER_URL is not set: a worker takes shards")


def test_send_with_an_unreachable_broker_is_one_error_and_sends_nothing(tmp_path: Path) -> None:
    _subscribers(tmp_path)
    result = newsletter(
        "send", cwd=tmp_path, NEWSLETTER_BROKER_URL="redis://:hunter2secret@127.0.0.1:1/0",
        NEWSLETTER_DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite'}",
    )
    assert result.returncode == 1
    error = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(error) == 1 and "cannot reach the broker redis://:**@127.0.0.1:1/0" in error[0]
    assert "hunter2secret" not in result.stdout + result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "outbox").exists()
