"""`python -m aifunction_operator` is `aifn`."""

import sys

from .cli import main

sys.exit(main())
