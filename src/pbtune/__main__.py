"""`python -m pbtune ...` runs the command line."""

from pbtune.cli import main

if __name__ == "__main__":
    main()
