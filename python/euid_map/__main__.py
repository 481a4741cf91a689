"""`python -m euid_map ARGS`: runs the bundled euid-map binary with ARGS."""
from euid_map._cli import main

if __name__ == "__main__":
    main()
