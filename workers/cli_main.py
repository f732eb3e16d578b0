"""``python -m workers.cli_main`` runs the ``isa`` command (same as the console script)."""

from workers.cli import app

if __name__ == "__main__":
    app()
