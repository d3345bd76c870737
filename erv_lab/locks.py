"""One trainer per stage folder: a lock file held while a stage trains (``erv_lab.stages``).

``stage_lock(folder)`` takes ``<run>/.<stage>.lock`` beside the stage's folder (beside, not inside: a folder
made with other settings is moved aside to ``<stage>.stale`` under the lock, and a lock inside would go with
it). The lock is an ``fcntl.flock`` on that file, which the kernel drops when its holder dies, however it
dies; the file names the holder (pid, host, start time, command) for the message a second process gets::

    StageBusy: runs/cpu-tiny/baseline is being trained by another process: pid 4242 on host box (since 20:31:02,
    erv-lab course --preset cpu-tiny). Wait for it to finish, or stop it; then run this again.

A lock file still naming a holder although the lock is free was left by a process that died (killed, a
kernel restart): it is taken over with a warning. A holder on another host (two machines, one shared
folder, where flock may not reach across) touches its file every ``HEARTBEAT_S`` seconds; its lock counts
as left behind once it is ``STALE_S`` seconds old. The same process may take a lock it holds again;
:func:`release_all` frees this process's locks at once (an arm worker told to stop, ``erv_lab.arms``).
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sys
import threading
import time
import warnings
from pathlib import Path

HEARTBEAT_S, STALE_S = 30.0, 120.0
_held: dict[str, list] = {}  # lock path -> [how many times this process holds it, its file descriptor]


class StageBusy(RuntimeError):
    """Another live process is training this stage folder."""


def lock_path(folder: str | Path) -> Path:
    folder = Path(folder)
    return folder.with_name(f".{folder.name}.lock")


def _holder(fd: int) -> dict:
    os.lseek(fd, 0, os.SEEK_SET)
    try:
        return json.loads(os.read(fd, 65536) or b"{}")
    except ValueError:  # half written by a process that died while writing it
        return {}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _describe(h: dict, path: Path) -> str:
    since = time.strftime("%H:%M:%S", time.localtime(h.get("time", 0)))
    return f"pid {h.get('pid', '?')} on host {h.get('host', '?')} (since {since}, {h.get('command', '?')})"


def _busy(h: dict, path: Path, flocked: bool) -> bool:
    """Whether the holder named in the file still holds the lock (we may hold the flock: see the module doc)."""
    if not h or h.get("pid") == os.getpid() and h.get("host") == socket.gethostname():
        return False
    if h.get("host") != socket.gethostname():  # another machine: only its heartbeat tells
        return time.time() - path.stat().st_mtime < STALE_S
    return not flocked and _alive(int(h.get("pid", 0)))  # flock unsupported here: trust the pid


def _heartbeat(path: Path, stop: threading.Event) -> None:
    while not stop.wait(HEARTBEAT_S):
        with contextlib.suppress(OSError):
            os.utime(path)


@contextlib.contextmanager
def stage_lock(folder: str | Path, what: str = "trained"):
    """Hold the lock of stage folder ``folder`` for the ``with`` block; :class:`StageBusy` naming the
    holder's pid and host when another live process holds it; a lock left by a dead process is taken over
    with a warning."""
    path = lock_path(folder)
    key = str(path.resolve())
    if key in _held:  # this process holds it already (a worker around its own ensure_grpo)
        _held[key][0] += 1
        try:
            yield path
        finally:
            _held[key][0] -= 1
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            flocked = True
        except BlockingIOError:
            raise StageBusy(f"{Path(folder)} is being {what} by another process: {_describe(_holder(fd), path)}. "
                            f"Wait for it to finish, or stop it; then run this again.") from None
        except OSError:  # a file system without flock: the pid in the file decides
            flocked = False
        h = _holder(fd)
        if _busy(h, path, flocked):
            raise StageBusy(f"{Path(folder)} is being {what} by another process: {_describe(h, path)}. If that "
                            f"process is gone, delete {path} (or wait {STALE_S:.0f} s); then run this again.")
        if h and h.get("pid") != os.getpid():
            warnings.warn(f"{path}: took over the lock left by {_describe(h, path)}, which is no longer running",
                          stacklevel=3)
        me = {"pid": os.getpid(), "host": socket.gethostname(), "time": time.time(),
              "command": " ".join([os.path.basename(sys.argv[0] if sys.argv else "python"), *sys.argv[1:]])[:200]}
        os.ftruncate(fd, 0), os.lseek(fd, 0, os.SEEK_SET), os.write(fd, json.dumps(me).encode())
        stop = threading.Event()
        threading.Thread(target=_heartbeat, args=(path, stop), daemon=True, name=f"lock {path.name}").start()
        _held[key] = [1, fd]
        try:
            yield path
        finally:
            _held.pop(key, None)
            stop.set()
            os.ftruncate(fd, 0)  # released cleanly: an empty file is a free lock
    finally:
        os.close(fd)  # drops the flock


def release_all() -> None:
    """Mark every lock this process holds as released (empty files), e.g. just before ``os._exit``: the
    next trainer then starts without a takeover warning. The flocks themselves go with the process."""
    for _, fd in list(_held.values()):
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
