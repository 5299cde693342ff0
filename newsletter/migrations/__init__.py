"""Alembic's migration environment for the store (`env.py`) and its revisions (`versions/`).

Shipped inside the package so that a non-editable install can migrate a database; the store runs
these through Alembic's API (`newsletter.store.migrate`), with no alembic.ini.
"""
