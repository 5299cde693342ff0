"""The Celery brokers the worker tests run on: the machine's Redis and RabbitMQ.

REDIS_TEST_URL (default redis://127.0.0.1:6379) and RABBITMQ_TEST_URL (default
amqp://guest:guest@127.0.0.1:5672//). Each test gets a queue of its own (NEWSLETTER_BROKER_QUEUE),
so runs sharing a broker never take each other's shards. Without a reachable broker the tests
skip with the reason; with CI set they fail instead, like the PostgreSQL ones (databases.py).
"""

from __future__ import annotations

import os
import random

import pytest

DEFAULTS = {
    "redis": ("REDIS_TEST_URL", "redis://127.0.0.1:6379"),
    "rabbitmq": ("RABBITMQ_TEST_URL", "amqp://guest:guest@127.0.0.1:5672//"),
}


def connect_broker(kind: str) -> str:
    """A broker URL of `kind` that answers, or skip (fail under CI) saying why there is none."""
    variable, default = DEFAULTS[kind]
    url = os.environ.get(variable, default)
    try:
        from kombu import Connection
    except ImportError as exc:
        reason = f"Celery is not installed ({exc.name}); pip install -e '.[test]'"
    else:
        try:
            with Connection(url, connect_timeout=3) as connection:
                connection.ensure_connection(max_retries=1)
        except Exception as exc:  # noqa: BLE001 - any failure to connect means "no broker here"
            reason = f"no {kind} broker at {url} (set {variable}): {exc}"
        else:
            if kind == "redis":  # a database of its own among the 16, to keep out of others' way
                url = f"{url.rstrip('/')}/{random.randint(1, 15)}"
            return url
    if os.environ.get("CI"):
        pytest.fail(f"CI requires the worker tests: {reason}", pytrace=False)
    pytest.skip(reason)
