"""Console output as a person sees it: a progress bar only on a terminal and only for long runs."""

from __future__ import annotations

import fcntl
import io
import os
import pty
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

from support import write_script

from ndustria.show.console import Console

LONG_RUN = """
import time
from ndustria import Pipeline

pipe = Pipeline(name="bar")

@pipe.AddFunction()
def slow(i):
    time.sleep(SECONDS)
    return i

for i in range(6):
    slow(i)
pipe.run()
print("finished")
"""


def run_with_terminal_stderr(script: Path) -> tuple[str, str]:
    """Run ``script`` with stderr on a pseudo-terminal (stdout a pipe); returns (stdout, terminal)."""
    main, secondary = pty.openpty()
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a terminal of 100 columns
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=secondary, text=True)
    os.close(secondary)
    screen = b""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        ready, _, _ = select.select([main], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(main, 4096)
            except OSError:  # the terminal closed with the process
                break
            if not chunk:
                break
            screen += chunk
        elif proc.poll() is not None:
            break
    os.close(main)
    out = proc.communicate(timeout=60)[0]
    return out, screen.decode(errors="replace")


def test_a_long_run_shows_a_progress_bar_on_a_terminal(tmp_path):
    out, screen = run_with_terminal_stderr(write_script(tmp_path / "long.py", LONG_RUN.replace("SECONDS", "0.6")))
    assert out.strip().splitlines()[-1] == "finished"
    assert "6/6" in screen or "5/6" in screen or "4/6" in screen, screen  # tqdm's count of tasks done
    assert "task" in screen


def test_a_short_run_or_a_pipe_shows_no_bar(tmp_path):
    out, screen = run_with_terminal_stderr(write_script(tmp_path / "short.py", LONG_RUN.replace("SECONDS", "0")))
    assert out.strip().splitlines()[-1] == "finished" and "/6" not in screen  # done before the bar's delay
    piped = subprocess.run([sys.executable, str(tmp_path / "long.py" if (tmp_path / "long.py").exists()
                                               else write_script(tmp_path / "long.py",
                                                                 LONG_RUN.replace("SECONDS", "0.6")))],
                           capture_output=True, text=True, timeout=120)
    assert piped.returncode == 0 and "/6" not in piped.stderr  # stderr a pipe: never a bar


def test_lines_reach_a_pipe_at_the_run_end_and_failures_at_once():
    stream = io.StringIO()
    console = Console(verbose=True, stream=stream)
    console.added("f(1)")
    console.failed("f(2)", "ValueError: bad")
    assert stream.getvalue() == "[Added Task] f(1)\n[Failed] f(2): ValueError: bad\n"
    console.all_done()
    assert stream.getvalue().endswith("All done.\n")
