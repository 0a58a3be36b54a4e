"""`python -m benchmarks` (make bench): every measurement in one run, see benchmarks.all."""

import sys

from benchmarks.all import main

sys.exit(main())
