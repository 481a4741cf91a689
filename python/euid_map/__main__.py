"""`python -m euid_map ARGS`: runs the installed euid-map binary with ARGS."""
import os
import sys

from euid_map import find_bin


def main() -> None:
    binary = find_bin()
    if sys.platform == "win32":
        import subprocess

        sys.exit(subprocess.call([binary, *sys.argv[1:]]))
    os.execv(binary, [binary, *sys.argv[1:]])


if __name__ == "__main__":
    main()
