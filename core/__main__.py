"""``python -m backproplab`` is the ``backproplab`` command."""

from backproplab.cli.main import main

if __name__ == "__main__":
    main()
