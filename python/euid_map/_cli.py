"""The ``euid-map`` command of the wheel: replaces this Python process with the native
binary (``os.execv``), so exit codes, signals (SIGTERM draining, Ctrl-C), broken pipes,
stdin and stdout are the binary's own, as if it had been run directly."""
import os
import signal
import sys


def main() -> None:
    from euid_map import find_bin

    binary = find_bin()
    # Python ignores SIGPIPE and SIGXFSZ at startup, and ignored signals survive exec: give
    # the binary the dispositions a shell would.
    for name in ("SIGPIPE", "SIGXFSZ"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), signal.SIG_DFL)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(binary, ["euid-map", *sys.argv[1:]])


if __name__ == "__main__":
    main()
