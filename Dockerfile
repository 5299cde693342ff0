# The newsletter service: `newsletter run` (scheduler) by default.
#   docker build -t newsletter .
#   docker run -v $PWD/data:/data -e NEWSLETTER_SMTP_HOST=... newsletter
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    NEWSLETTER_DUMPS_DIR=/data/dumps \
    NEWSLETTER_SUBSCRIBERS_FILE=/data/subscribers.yaml \
    NEWSLETTER_DATABASE_URL=sqlite:////data/state/newsletter.db \
    NEWSLETTER_OUTBOX_DIR=/data/outbox \
    NEWSLETTER_PREVIEW_DIR=/data/preview

WORKDIR /app
COPY pyproject.toml README.md ./
COPY newsletter ./newsletter
COPY templates ./templates
RUN pip install '.[postgres,celery]' \
    && useradd --system --create-home --uid 10001 newsletter \
    && mkdir -p /data/dumps /data/state /data/outbox /data/preview \
    && chown -R newsletter /data

USER newsletter
WORKDIR /data
VOLUME ["/data/dumps", "/data/state", "/data/outbox"]
# `newsletter serve --host 0.0.0.0` (or `run` with NEWSLETTER_SERVE=true) answers the digest's links here.
EXPOSE 8000
# Healthy while the service's heartbeat (written on every dumps poll) is fresh: within three
# polls and at least five minutes (see `newsletter status --health`).
HEALTHCHECK --interval=60s --timeout=20s --start-period=60s --retries=3 \
    CMD ["newsletter", "status", "--health"]
CMD ["newsletter", "run"]
