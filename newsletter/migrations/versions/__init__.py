"""One module per schema change, oldest first; Alembic chains them by `down_revision`."""
