"""py-spy: record the proxy during one workload, then rank functions by own and total time.

The recording is py-spy's "raw" format (collapsed stacks, one "frame;frame;... count" line
per distinct stack), which flamegraph.pl, inferno and https://www.speedscope.app read.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

LINE_NUMBER = re.compile(r":\d+\)$")


class ProfileError(RuntimeError):
    pass


def binary() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(found).exists():
        raise ProfileError("py-spy is not installed (pip install py-spy)")
    return found


def _wait_attached(proc: subprocess.Popen[bytes], log: Path, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while b"Sampling process" not in log.read_bytes():
        if proc.poll() is not None:
            raise ProfileError(f"py-spy exited with {proc.returncode}: {log.read_text(errors='replace')[-300:]}")
        if time.monotonic() > deadline:
            raise ProfileError("py-spy did not start sampling (it needs root or ptrace rights)")
        time.sleep(0.05)


def _finish(proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    """SIGINT makes py-spy write its output and exit; SIGKILL if it does not."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextlib.contextmanager
def recording(pid: int, output: Path, rate: int = 200, gil: bool = True) -> Iterator[None]:
    """Sample ``pid`` (and its subprocesses) for the duration of the ``with`` block.

    With ``gil``, only samples where a thread holds the GIL count: Python's own CPU work.
    Without, a thread inside a system call counts too, including while it waits for a CPU
    after waking the peer it sent to (on a busy 2-core box that dominates ``socket.send``).
    """
    log = output.with_suffix(".py-spy.log")
    args = [binary(), "record", "--pid", str(pid), "--subprocesses", "--format", "raw",
            "--rate", str(rate), "--output", str(output)] + (["--gil"] if gil else [])
    with open(log, "wb") as out:
        proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        _wait_attached(proc, log)
        yield
    finally:
        _finish(proc)
    if not output.exists():
        raise ProfileError(f"py-spy wrote no profile: {log.read_text(errors='replace')[-300:]}")


@dataclass
class Profile:
    samples: int
    own: list[tuple[str, int]]  # function, samples where it was the innermost frame
    total: list[tuple[str, int]]  # function, samples where it was anywhere on the stack

    def as_dict(self) -> dict[str, object]:
        def rows(items: list[tuple[str, int]]) -> list[dict[str, object]]:
            return [{"function": f, "samples": n, "percent": round(100 * n / max(1, self.samples), 2)}
                    for f, n in items]

        return {"samples": self.samples, "own": rows(self.own), "total": rows(self.total)}


def function_of(frame: str) -> str:
    """ "handle (proxy/server.py:123)" -> "handle (proxy/server.py)" """
    return LINE_NUMBER.sub(")", frame.strip())


def parse_collapsed(text: str, top: int = 40) -> Profile:
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = 0
    for line in text.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [function_of(f) for f in stack.split(";") if f and not f.startswith("process ")]
        if not frames:
            continue
        samples += count
        own[frames[-1]] += count
        for function in set(frames):
            total[function] += count
    return Profile(samples, own.most_common(top), total.most_common(top))


def format_profile(profile: Profile, limit: int = 15) -> str:
    def block(title: str, items: list[tuple[str, int]]) -> list[str]:
        out = [title]
        for function, n in items[:limit]:
            out.append(f"  {100 * n / max(1, profile.samples):5.1f}%  {n:6d}  {function}")
        return out

    lines = [f"py-spy: {profile.samples} samples of the proxy (idle time excluded)"]
    lines += block("by own time (innermost frame):", profile.own)
    # Frames on every sample (runpy, main, trio's run loop) say nothing: leave them out.
    partial = [(f, n) for f, n in profile.total if n < profile.samples]
    lines += block("by total time (anywhere on the stack; frames on every sample left out):", partial)
    return "\n".join(lines)
