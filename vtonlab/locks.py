"""Inter-process file locks: one writer at a time for a checkpoint or a rendered dataset folder.

:func:`file_lock` takes a POSIX ``flock`` on a small lock file. Three details make it safe with the
process pools and killed processes of a training or rendering run:

- the file is opened with ``O_CLOEXEC``, so a program started with ``exec`` never inherits it;
- a child created with ``fork`` (a ``multiprocessing`` pool worker) closes its copy at once
  (``os.register_at_fork``), so a lock is held by the process that took it and by nobody else, and the
  kernel releases it when that process dies, even by ``SIGKILL``;
- the holder writes its pid into the file, so a process that has to wait says for whom
  (``waiting for another process rendering <folder> (pid N)``).

The lock is re-entrant within a thread (taking it again while holding it is a no-op), so a function
holding it may call another that takes it. On systems without ``fcntl`` it is a no-op.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]


class _Held:
    __slots__ = ("fd", "shared", "count")

    def __init__(self, fd: int, shared: bool):
        self.fd, self.shared, self.count = fd, shared, 1


_HELD: dict[tuple[str, int], _Held] = {}
_REGISTRY_LOCK = threading.Lock()


def _forget_in_child() -> None:
    """After ``fork``: close the child's copies of every lock descriptor (the parent keeps its locks).

    The registry's own lock is made anew: another thread of the parent may have held it at the fork.
    """
    global _REGISTRY_LOCK
    _REGISTRY_LOCK = threading.Lock()
    for held in list(_HELD.values()):
        with contextlib.suppress(OSError):
            os.close(held.fd)
    _HELD.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_in_child)


def holder_pid(path: str | os.PathLike) -> int | None:
    """The pid written in a lock file by its current (or last) exclusive holder, if any."""
    try:
        text = Path(path).read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie (a killed process its parent has not reaped)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    if stat.exists():
        try:
            state = stat.read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return True
        return state not in ("Z", "X")
    return True


@contextlib.contextmanager
def file_lock(path: str | os.PathLike, *, shared: bool = False, waiting: str | None = None,
              say: Callable[[str], None] | None = None) -> Iterator[None]:
    """Hold an exclusive (or ``shared``) lock on the file ``path`` (created if absent) inside the block.

    Args:
        path: the lock file; its folder is created.
        shared: a reader's lock (many at once, none while a writer holds it).
        waiting: what the holder is doing, for the one message printed when this call has to wait
            (``"waiting for another process <waiting> (pid N)"``).
        say: where that message goes (default: standard error).

    Raises ``RuntimeError`` when a thread holding the shared lock asks for the exclusive one (that
    would wait for itself).
    """
    if fcntl is None:  # pragma: no cover - Windows
        yield
        return
    path = Path(path)
    key = (os.path.realpath(path), threading.get_ident())
    with _REGISTRY_LOCK:
        held = _HELD.get(key)
        if held is not None:
            if held.shared and not shared:
                raise RuntimeError(f"{path}: this thread holds the shared lock and asked for the exclusive one")
            held.count += 1
    if held is not None:
        try:
            yield
        finally:
            with _REGISTRY_LOCK:
                held.count -= 1
        return

    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666)
    mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
    try:
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
        except BlockingIOError:
            if waiting is not None:
                pid = holder_pid(path)
                for _ in range(10):  # the holder writes its pid just after taking the lock
                    if pid is not None:
                        break
                    time.sleep(0.01)
                    pid = holder_pid(path)
                message = f"waiting for another process {waiting}" + (f" (pid {pid})" if pid else "")
                (say or (lambda m: print(m, file=sys.stderr, flush=True)))(message)
            fcntl.flock(fd, mode)
        if not shared:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    except BaseException:
        os.close(fd)
        raise
    entry = _Held(fd, shared)
    with _REGISTRY_LOCK:
        _HELD[key] = entry
    try:
        yield
    finally:
        with _REGISTRY_LOCK:
            ours = _HELD.get(key) is entry
            if ours:
                del _HELD[key]
        if ours:  # not after a fork: the child closed its copy and must not unlock the parent's lock
            try:
                if not shared:
                    os.ftruncate(fd, 0)
                fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)


__all__ = ["file_lock", "holder_pid", "pid_alive"]
