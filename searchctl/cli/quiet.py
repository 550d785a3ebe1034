"""A quiet terminal: TensorFlow's, absl's and CUDA's log lines kept out of a command's output.

TensorFlow's native code writes its start-up lines (oneDNN, cuInit, CPU features) to file
descriptor 2 before any setting of ours can reach its logger, and some later ones (tf.data's
NodeDef notes) whatever TF_CPP_MIN_LOG_LEVEL says. So the command line routes descriptor 2
through a thread that drops lines in absl's log format and passes everything else on;
Python's own sys.stderr (our messages, tracebacks, progress bars) writes to the terminal
directly. Fatal lines (F...) always pass. `searchctl --verbose` (or SEARCHCTL_VERBOSE=1)
leaves descriptor 2 alone.
"""

from __future__ import annotations

import atexit
import io
import os
import re
import sys
import threading

NATIVE_LOG = re.compile(
    rb"^(?:[IWE]\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ \S+:\d+\] "  # absl: I0000 00:00:12.3 42 file.cc:12]
    rb"|WARNING: All log messages before absl::InitializeLog\(\) is called"
    rb"|To enable the following instructions: )"  # the CPU-features line's second line
)


def is_native_log(line: bytes) -> bool:
    return bool(NATIVE_LOG.match(line))


def verbose_asked(argv: list[str]) -> bool:
    return "--verbose" in argv or os.environ.get("SEARCHCTL_VERBOSE", "") not in ("", "0")


def filter_native_logs() -> None:
    """Route descriptor 2 through the filter for the rest of the process."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    terminal = os.dup(2)
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)
    sys.stderr = io.TextIOWrapper(
        os.fdopen(os.dup(terminal), "wb", buffering=0), line_buffering=True, errors="replace"
    )

    def forward() -> None:
        with os.fdopen(read_end, "rb") as lines:
            for line in lines:
                if not is_native_log(line):
                    os.write(terminal, line)

    thread = threading.Thread(target=forward, name="searchctl-stderr", daemon=True)
    thread.start()

    def finish() -> None:
        # Closing descriptor 2 ends the pipe: the thread forwards what is left, then stops.
        os.dup2(terminal, 2)
        thread.join(timeout=2)

    atexit.register(finish)
