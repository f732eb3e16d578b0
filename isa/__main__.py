"""``python -m isa`` runs the ``isa`` command (same as the console script)."""

from isa.cli import app

if __name__ == "__main__":
    app()
