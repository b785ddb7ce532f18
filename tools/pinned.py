"""Print pyproject.toml's requirement strings for the named packages, one per line (``--build``: the build-system
requirements), so the install recipe pins nothing of its own."""
import argparse
import re
import sys
import tomllib
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("names", nargs="*", help="distribution names (e.g. torch mmcv)")
    parser.add_argument("--build", action="store_true", help="print the [build-system] requires instead")
    args = parser.parse_args(argv)
    project = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))
    if args.build:
        print("\n".join(project["build-system"]["requires"]))
        return 0
    requirements = {re.split(r"[\s<>=!~\[;]", r, maxsplit=1)[0].lower(): r for r in project["project"]["dependencies"]}
    missing = [n for n in args.names if n.lower() not in requirements]
    if missing:
        print(f"error: {PYPROJECT}: no dependency named {', '.join(missing)}", file=sys.stderr)
        return 2
    print("\n".join(requirements[n.lower()] for n in args.names))
    return 0


if __name__ == "__main__":
    sys.exit(main())
