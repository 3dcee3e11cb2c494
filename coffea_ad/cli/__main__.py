"""``python -m coffea_ad.cli``: the ``coffea-ad`` command."""

import sys

from coffea_ad.cli import main

sys.exit(main())
