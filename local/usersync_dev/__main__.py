"""`python -m usersync_dev ...`, the same as the `usersync-dev` console script."""

import sys

from usersync_dev.cli import main

sys.exit(main())
