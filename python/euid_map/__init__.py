"""euid-map: the `euid-map` command, installed from a wheel.

There is no Python API yet; this module finds the installed binary, for tools that want to
run it with `subprocess` (Airflow, Dagster) without relying on PATH::

    import subprocess, euid_map
    subprocess.run([euid_map.find_bin(), "--version"], check=True)
"""
import os
import sys
import sysconfig

__all__ = ["find_bin"]


def find_bin() -> str:
    """The path of the `euid-map` executable that came with this package."""
    name = "euid-map" + sysconfig.get_config_var("EXE") if sysconfig.get_config_var("EXE") else "euid-map"
    candidates = [os.path.join(sysconfig.get_path("scripts"), name)]
    user = sysconfig.get_path("scripts", f"{os.name}_user") if os.name != "nt" else None
    if user:
        candidates.append(os.path.join(user, name))
    # A --target or --prefix install keeps the binary beside the package's parent folders.
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    candidates.append(os.path.join(here, "bin", name))
    candidates.append(os.path.join(os.path.dirname(sys.executable), name))
    for path in candidates:
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    raise FileNotFoundError(f"the euid-map executable was not found (looked in {', '.join(candidates)})")
