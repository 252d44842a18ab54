"""`python -m unillm ...` is the `unillm` command."""

from .cli import main

main()
