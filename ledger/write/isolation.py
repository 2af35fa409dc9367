"""Run one call in a forked child whose only way back is its return value.

The child runs the function on the copies it inherited, checks the result
against the return type hint (strictly), and sends back the JSON of that
result, or the exception it raised (``KeyboardInterrupt`` and ``SystemExit``
included, so the parent records and re-raises them), through a pipe; then
``os._exit``. It never touches the ledger, files or database connections it
inherited. The parent reads the pipe with a deadline, so a crashed or hung
child becomes an ``ExecutionError`` instead of a hang; a parent interrupted
while it waits kills and reaps the child first. Nothing is written to the
file system.
"""

from __future__ import annotations

import os
import pickle
import select
import signal
import struct
import sys
import time
import traceback
from typing import Any, Callable

from pydantic import TypeAdapter, ValidationError

from ledger import _process
from ledger.errors import ExecutionError, ReturnTypeError
from ledger.write.returns import iterator_problem

__all__ = ["ChildFailure", "run_in_child"]

_OK, _RAISED, _BAD_RETURN = b"O", b"E", b"T"
_adapters = _process.adapters


class ChildFailure(Exception):
    """The child raised; carries the original exception (when it could be sent) and its text."""

    def __init__(self, error: BaseException, error_type: str, message: str, tb: str) -> None:
        super().__init__(message)
        self.error = error
        self.error_type = error_type
        self.message = message
        self.tb = tb


def _adapter(annotation: Any) -> TypeAdapter[Any]:
    key = annotation
    try:
        hash(key)
    except TypeError:
        key = repr(annotation)
    adapter = _adapters.get(key)
    if adapter is None:
        adapter = _adapters[key] = TypeAdapter(annotation)
    return adapter


def run_in_child(
    fn: Callable[..., Any],
    kwargs: dict[str, Any],
    return_annotation: Any,
    *,
    function_name: str,
    timeout: float | None,
) -> Any:
    """Call ``fn(**kwargs)`` in a forked process and return a rebuilt copy of its result.

    Raises ``ChildFailure`` when the function raised, ``ReturnTypeError`` when it
    returned something its hint does not allow, ``ExecutionError`` when the
    child died or ran past ``timeout`` seconds.
    """
    adapter = _adapter(return_annotation)
    read_fd, write_fd = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # ------------------------------------------------------- child
        code = 0
        try:
            os.close(read_fd)
            _child(fn, kwargs, adapter, return_annotation, function_name, write_fd)
        except BaseException:  # noqa: BLE001 - the child must always reach _exit
            code = 70
        finally:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(code)
    # ------------------------------------------------------------------- parent
    os.close(write_fd)
    try:
        data = _read_all(read_fd, pid, timeout, function_name)
    except ExecutionError:  # the deadline passed: _read_all killed and reaped the child
        raise
    except BaseException:  # interrupted while waiting (Ctrl-C): leave no orphan or zombie
        _kill(pid)
        raise
    finally:
        os.close(read_fd)
    status = _reap(pid)
    if len(data) < 1:
        raise ExecutionError(
            f"function {function_name!r}: its isolated process ended without a result "
            f"({_describe(status)})"
        )
    kind, payload = data[:1], data[1:]
    if kind == _OK:
        return adapter.validate_json(payload)
    if kind == _BAD_RETURN:
        raise ReturnTypeError(payload.decode("utf-8", "replace"))
    error_type, message, tb, pickled = pickle.loads(payload)
    error: BaseException
    try:
        error = pickle.loads(pickled) if pickled is not None else ExecutionError(message)
    except Exception:  # noqa: BLE001 - an exception that cannot be rebuilt here
        error = ExecutionError(f"{error_type}: {message}")
    raise ChildFailure(error, error_type, message, tb)


def _child(
    fn: Callable[..., Any],
    kwargs: dict[str, Any],
    adapter: TypeAdapter[Any],
    annotation: Any,
    name: str,
    fd: int,
) -> None:
    try:
        result = fn(**kwargs)
    except BaseException as exc:  # noqa: BLE001 - reported to the parent (KeyboardInterrupt and SystemExit too)
        try:
            data = pickle.dumps(exc)
            pickle.loads(data)  # an exception that pickles but cannot be rebuilt is sent as text
            pickled: bytes | None = data
        except Exception:  # noqa: BLE001
            pickled = None
        msg = pickle.dumps((type(exc).__name__, str(exc), traceback.format_exc(), pickled))
        _write(fd, _RAISED + msg)
        return
    problem = iterator_problem(result, name)  # before pickling or validating can consume it
    if problem is not None:
        _write(fd, _BAD_RETURN + problem.encode())
        return
    try:
        checked = adapter.validate_python(result, strict=True)
        out = adapter.dump_json(checked)
    except (ValidationError, TypeError, ValueError) as exc:
        if isinstance(exc, ValidationError):
            err = exc.errors()[0]
            detail = f"{'.'.join(str(p) for p in err['loc']) or 'value'}: {err['msg']}"
        else:
            detail = str(exc)
        _write(
            fd,
            _BAD_RETURN
            + (
                f"function {name!r} returned {type(result).__name__}, which does not match its "
                f"return type hint {_type_name(annotation)}: {detail}"
            ).encode(),
        )
        return
    _write(fd, _OK + out)


def _write(fd: int, data: bytes) -> None:
    view = memoryview(struct.pack("!Q", len(data)) + data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _read_all(fd: int, pid: int, timeout: float | None, name: str) -> bytes:
    deadline = None if timeout is None else time.monotonic() + timeout
    chunks: list[bytes] = []
    while True:
        wait = None if deadline is None else max(0.0, deadline - time.monotonic())
        ready, _, _ = select.select([fd], [], [], wait)
        if not ready:
            _kill(pid)
            raise ExecutionError(
                f"function {name!r}: its isolated process ran past the timeout of {timeout} s "
                "and was killed"
            )
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            break
        chunks.append(chunk)
    raw = b"".join(chunks)
    if len(raw) < 8:
        return b""
    (size,) = struct.unpack("!Q", raw[:8])
    body = raw[8:]
    return body if len(body) == size else b""


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    _reap(pid)


def _reap(pid: int) -> int:
    try:
        _, status = os.waitpid(pid, 0)
    except ChildProcessError:
        return 0
    return status


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            return f"killed by signal {signal.Signals(sig).name}"
        except ValueError:
            return f"killed by signal {sig}"
    if os.WIFEXITED(status):
        return f"exit status {os.WEXITSTATUS(status)}"
    return f"status {status}"


def _type_name(annotation: Any) -> str:
    return annotation.__name__ if isinstance(annotation, type) else repr(annotation)
