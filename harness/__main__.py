"""`python -m harness` (what `torchrun -m harness run RECIPE` launches)."""

from harness.cli import main

if __name__ == "__main__":
    main()
