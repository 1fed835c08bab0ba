"""``python -m traceviz ...``: the same as the ``traceviz`` command."""

from traceviz.cli import main

if __name__ == "__main__":
    main()
