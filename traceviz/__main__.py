"""``python -m traceviz ...``: the same as the ``traceviz`` command."""

from traceviz.cli import entry

if __name__ == "__main__":
    entry()
