"""One exit-status convention for every ``python -m`` entry point of the pipeline.

0: done. 1: the command ran and its check failed (``submit.validate`` found problems). 2: the command could not
run: bad arguments (argparse's own status) or a missing or malformed input, reported as one ``error: ...`` line
on stderr that names the file, line or value, never as a traceback.
"""
from __future__ import annotations

import functools
import sys
from collections.abc import Callable

from contracts.files import DataError

INPUT_ERRORS = (DataError, OSError, ValueError)
EXIT_INPUT_ERROR = 2


def report_error(error: BaseException | str) -> int:
    """Print ``error: ...`` to stderr and return status 2."""
    message = error.args[0] if isinstance(error, KeyError) and error.args else error
    print(f"error: {message}", file=sys.stderr, flush=True)
    return EXIT_INPUT_ERROR


def entry_point(main: Callable[..., int | None]) -> Callable[..., int]:
    """Wrap a ``main(argv)`` whose every step reads inputs: ``INPUT_ERRORS`` become ``error: ...`` and status 2."""

    @functools.wraps(main)
    def run(argv=None) -> int:
        try:
            return main(argv) or 0
        except INPUT_ERRORS as e:
            return report_error(e)

    return run
