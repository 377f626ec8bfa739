"""``python -m pipeliner_rx``: see `pipeliner_rx._cli`."""

import sys

from ._cli import main

if __name__ == "__main__":
    sys.exit(main())
