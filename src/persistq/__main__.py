"""``python -m persistq``: the same as the ``persistq`` command."""

from persistq.cli.main import run

if __name__ == "__main__":
    run()
