"""A sandboxed run's pipes as the worker holds them: its own ends non-blocking, the others handed to the launcher;
and stdin fed to the tool without blocking the event loop."""

from __future__ import annotations

import asyncio
import contextlib
import os


class Pipes:
    """The run's pipes: the worker's ends (non-blocking) and the ends handed to the launcher."""

    def __init__(self, stdin: bool, channel: bool) -> None:
        self.theirs: list[int] = []
        self.ours: dict[str, int] = {}
        if stdin:
            self.ours["stdin"], stdin_r = self._pipe(reverse=True)
            self.theirs.append(stdin_r)
        else:
            self.theirs.append(os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC))
        for name in ("stdout", "stderr", "status", *(["channel"] if channel else [])):
            self.ours[name], write = self._pipe()
            self.theirs.append(write)

    @staticmethod
    def _pipe(reverse: bool = False) -> tuple[int, int]:
        read, write = os.pipe2(os.O_CLOEXEC)
        os.set_blocking(write if reverse else read, False)
        return (write, read) if reverse else (read, write)

    def close_theirs(self) -> None:
        for fd in self.theirs:
            os.close(fd)
        self.theirs = []

    def close(self) -> None:
        self.close_theirs()
        for fd in self.ours.values():
            with contextlib.suppress(OSError):
                os.close(fd)
        self.ours = {}


async def feed(pipes: Pipes, data: bytes) -> None:
    """Write ``data`` to the tool's stdin without blocking the loop, then close it (the tool sees EOF)."""
    loop = asyncio.get_running_loop()
    fd = pipes.ours["stdin"]
    view = memoryview(data)
    try:
        while view:
            try:
                view = view[os.write(fd, view) :]
            except BlockingIOError:
                writable = loop.create_future()
                loop.add_writer(fd, writable.set_result, None)
                try:
                    await writable
                finally:
                    loop.remove_writer(fd)
    except (BrokenPipeError, ConnectionResetError):
        pass
    finally:
        os.close(pipes.ours.pop("stdin"))
