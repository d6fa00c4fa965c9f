"""``python -m signaling`` is the same as the ``switchboard`` console script."""

from signaling.tools.cli import main

if __name__ == "__main__":
    main()
