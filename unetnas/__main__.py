"""`python -m unetnas` (also what `deepspeed --module unetnas` launches on each rank)."""

from unetnas.cli.app import main

main()
