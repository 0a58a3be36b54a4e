"""`python -m benchmarks` (make bench): every measurement in one run, see benchmarks.all."""

import sys

from benchmarks.all import main

# Importing this module (a tool walking the package) must not start a 26-minute run.
if __name__ == "__main__":
    sys.exit(main())
