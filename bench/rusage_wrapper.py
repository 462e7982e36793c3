"""Run one command and write its wall time and rusage as JSON: the bench's process wrapper.

    python -S bench/rusage_wrapper.py RESULT.json ARGV...

Why a separate small process: Linux keeps a process's peak RSS across fork and exec, so a
command started straight from the bench (hundreds of MB, with its buffers) would report the
bench's own peak as its own. Started from this wrapper (a few MB, nothing imported but ``os``,
``time`` and ``json``), the floor is the wrapper's size. ``os.wait4`` covers the command and
every descendant it waited for: CPU seconds of the whole client tree, and the largest resident
set of any process in it.
"""

import json
import os
import sys
import time


def main() -> int:
    result_path, argv = sys.argv[1], sys.argv[2:]
    start = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        try:
            os.execvp(argv[0], argv)  # noqa: S606 -- argv is the bench's own command list
        finally:
            os._exit(127)
    _, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    with open(result_path, "w") as fh:
        json.dump(
            {
                "wall": wall,
                "exit_code": code,
                "cpu": usage.ru_utime + usage.ru_stime,
                "maxrss_kib": usage.ru_maxrss,
            },
            fh,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
