"""Keeping a lab's mosquitto up: restart it when it dies, with backoff, and give up loudly.

A lab runs for hours; a broker that dies (OOM killer, a crash, someone's ``kill``) would otherwise
strand every agent. :class:`Supervisor` watches the process from a daemon thread and restarts it
on the same files and port (agents reconnect on their own: persistent sessions and retained
messages come back from mosquitto's persistence). Each death and each restart is logged as a
warning, with the exit status and the last line of ``mosquitto.log``. A broker that keeps dying
(``RestartPolicy.max_deaths`` within ``window_s``: a broken config, a full disk) is not restarted
forever: the supervisor stops and :attr:`Supervisor.failed` says why, for ``edge-mcepl broker``
to exit non-zero.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ...errors import UserError
from .mosquitto import Mosquitto, last_log_line

log = logging.getLogger(__name__)

POLL_S = 0.1  # how often the watcher checks the process: a death is noticed within this


@dataclass(frozen=True)
class RestartPolicy:
    """Backoff between restarts (``first_delay_s``, doubling, capped) and when to stop trying."""

    first_delay_s: float = 0.5
    max_delay_s: float = 8.0
    max_deaths: int = 5  # this many deaths (failed restarts included) within window_s: give up
    window_s: float = 60.0

    def delay(self, recent_deaths: int) -> float:
        """The wait before the next start, after ``recent_deaths`` deaths within the window."""
        return min(self.first_delay_s * 2 ** (recent_deaths - 1), self.max_delay_s)


DEFAULT_RESTART = RestartPolicy()


def exit_status(returncode: int) -> str:
    """``status 1``, or ``killed by SIGKILL`` for a process a signal ended (Popen's negative codes)."""
    if returncode >= 0:
        return f"status {returncode}"
    try:
        return f"killed by {signal.Signals(-returncode).name}"
    except ValueError:
        return f"killed by signal {-returncode}"


class Supervisor:
    """Restarts a mosquitto process that exits on its own; :meth:`stop` ends both."""

    def __init__(self, launch: Callable[[], Mosquitto], first: Mosquitto, log_file: Path,
                 policy: RestartPolicy = DEFAULT_RESTART) -> None:
        self._launch, self._current, self._log_file, self.policy = launch, first, log_file, policy
        self._deaths: deque[float] = deque()
        self._notices: list[str] = []
        self._failed: str | None = None
        self._failed_event = threading.Event()
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._watch, name="edge-mcepl-mosquitto-supervisor", daemon=True)

    def start(self) -> Supervisor:
        self._thread.start()
        return self

    @property
    def pid(self) -> int:
        """The current mosquitto process (a new one after each restart)."""
        with self._lock:
            return self._current.process.pid

    @property
    def failed(self) -> str | None:
        """Why supervision gave up (mosquitto kept dying), or None while the broker is kept up."""
        return self._failed

    def wait_failed(self, timeout: float) -> str | None:
        """Wait up to ``timeout`` s for supervision to give up; :attr:`failed` then (None: still up)."""
        self._failed_event.wait(timeout)
        return self._failed

    @property
    def notices(self) -> list[str]:
        """One line per death and per restart so far, oldest first (what the broker command prints)."""
        with self._lock:
            return list(self._notices)

    def stop(self) -> None:
        """Stop watching, then stop mosquitto (a stop is never mistaken for a death)."""
        with self._lock:
            self._stopping.set()
            current = self._current
        current.stop()
        if self._thread.is_alive():
            self._thread.join()

    def _watch(self) -> None:
        while True:
            with self._lock:
                proc = self._current.process
            while proc.poll() is None:
                if self._stopping.wait(POLL_S):
                    return
            last = last_log_line(self._log_file)
            why = f"mosquitto exited ({exit_status(proc.returncode)})" + (f"; last log line: {last}" if last else "")
            if self._stopping.is_set() or not self._recover(why):
                return

    def _recover(self, why: str) -> bool:
        """Restart after a death (``why``), with backoff; False when supervision ends (stopped, or given up)."""
        while True:
            now = time.monotonic()
            self._deaths.append(now)
            while self._deaths[0] < now - self.policy.window_s:
                self._deaths.popleft()
            if len(self._deaths) >= self.policy.max_deaths:
                self._give_up(why)
                return False
            delay = self.policy.delay(len(self._deaths))
            self._notice(f"{why} — restarting in {delay:g} s ({len(self._deaths)} of {self.policy.max_deaths} "
                         f"deaths allowed within {self.policy.window_s:g} s)", logging.WARNING)
            if self._stopping.wait(delay):
                return False
            try:
                new = self._launch()
            except UserError as exc:  # it did not come up: that is one more death
                why = f"restart failed: {exc}"
                continue
            with self._lock:
                if self._stopping.is_set():  # stop() came during the start: it holds the old process
                    new.stop()
                    return False
                self._current = new
            self._notice(f"mosquitto restarted (pid {new.process.pid})", logging.WARNING)
            return True

    def _give_up(self, why: str) -> None:
        self._failed = (f"{why} — died {len(self._deaths)} times within {self.policy.window_s:g} s; "
                        f"not restarting it again (log {self._log_file})")
        self._notice(self._failed, logging.ERROR)
        self._failed_event.set()

    def _notice(self, line: str, level: int) -> None:
        log.log(level, "%s", line)
        with self._lock:
            self._notices.append(line)
