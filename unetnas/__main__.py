"""`python -m unetnas` (also what `deepspeed --module unetnas` launches on each rank)."""

import sys

try:
    from unetnas.cli.app import main
except KeyboardInterrupt:  # Ctrl-C while the CLI is still loading: nothing started, nothing to clean up
    print("interrupted", file=sys.stderr)
    sys.exit(130)

main()
