"""``python -m ndustria``: the command line (:mod:`ndustria.show.cli`)."""

import sys

from ndustria.show.cli import main

sys.exit(main())
