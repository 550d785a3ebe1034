"""The embedded store in a process of its own, for a server that searches in many threads.

Qdrant Edge holds the GIL for the whole of a query: in a server's process every search's
store time (a third of the GIL time of a busy server, bench/serve_load.py) stops the other
requests' photo decoding, models and re-rank. In a child process the store searches beside
them, as a Qdrant server would.

The child (`python -m qdrant.process`) opens an EdgeStore and answers calls on a local socket
(multiprocessing.connection, authenticated by a key the parent hands it on stdin), one
connection and one answering thread per calling thread. It exits when its stdin closes, so a
parent that dies (even killed) never leaves the collections locked by an orphan. What
searches read again and again stays in the parent (the payload fields of hits, the vector
sizes): this process is the collections' only writer, so its own writes are all there is to
forget.
"""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from copy import deepcopy
from multiprocessing import AuthenticationError
from multiprocessing.connection import Client, Connection, Listener
from pathlib import Path

from qdrant.base import Hit, StoreError, VectorStore, Where
from qdrant.edge import EdgeStore, ReadCache

# Calls that change nothing: every other call drops what this side keeps of the store.
READS = frozenset(
    {"list_collections", "get_metadata", "payload_indexes", "vector_sizes", "count", "ids",
     "retrieve", "search_batch", "score", "text_search", "sample", "run"}
)  # fmt: skip
# Reads whose answers this side keeps until the next write: a search asks for them each time.
KEPT = frozenset(
    {"list_collections", "get_metadata", "payload_indexes", "vector_sizes", "count", "sample"}
)
# VectorStore's methods made of others: they run on this side, calling the child through those.
_BUILT_HERE = frozenset({"search", "iter_points", "has_collection"})
START_SECONDS = 60


class StoreProcess(VectorStore):
    """An EdgeStore under `data_dir` in a child process; every VectorStore call is made there.
    The collections' holder (the StoreLocked message) is this process, the one to stop."""

    def __init__(self, data_dir: str | Path):
        self.data_dir = Path(data_dir)
        self._authkey = os.urandom(32)
        self._child = subprocess.Popen(
            [sys.executable, "-m", "qdrant.process", str(self.data_dir), str(os.getpid())],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            env={**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"},
        )  # fmt: skip
        self._child.stdin.write(self._authkey.hex() + "\n")
        self._child.stdin.flush()
        self._address = self._child.stdout.readline().strip()
        if not self._address:
            code = self._child.wait(timeout=START_SECONDS)
            raise StoreError(f"the store process exited as it started (code {code})")
        self._local = threading.local()
        self._lock = threading.Lock()
        self._kept: dict[tuple, object] = {}
        self._generation = 0  # of what is kept: one more at every write
        self._reads = ReadCache()
        self._closed = False

    def __repr__(self) -> str:
        return f"StoreProcess({str(self.data_dir)!r}, pid {self.pid})"

    @property
    def pid(self) -> int:
        return self._child.pid

    def _connection(self) -> Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = Client(self._address, "AF_UNIX", authkey=self._authkey)
        return conn

    def _call(self, method: str, *args, **kwargs):
        if self._closed:
            raise StoreError(f"the store of {self.data_dir} was closed")
        if method in KEPT:
            key = (method, args, tuple(sorted(kwargs.items())))
            with self._lock:
                if key in self._kept:
                    return deepcopy(self._kept[key])
                generation = self._generation
        elif method not in READS:
            self._forget()
        conn = self._connection()
        try:
            conn.send((method, args, kwargs))
            ok, value = conn.recv()
        except (EOFError, OSError) as exc:
            raise StoreError(
                f"the store process (pid {self.pid}) for {self.data_dir} is gone: {exc!r}"
            ) from exc
        if not ok:
            raise value
        if method in KEPT:
            with self._lock:
                if generation == self._generation:
                    self._kept[key] = deepcopy(value)
        elif method not in READS:
            self._forget()  # again: a read that raced the write may have kept its answer
        return value

    def _forget(self) -> None:
        with self._lock:
            self._generation += 1
            self._kept.clear()
        self._reads.forget()

    def search_batch(
        self,
        name: str,
        vectors,
        using: str,
        limit: int,
        where: Where | None = None,
        exact: bool = False,
        with_payload: bool | list[str] = True,
        row_where: Sequence[Where | None] | None = None,
    ) -> list[list[Hit]]:
        if not ReadCache.cacheable(with_payload):
            args = (name, vectors, using, limit, where, exact, with_payload, row_where)
            return self._call("search_batch", *args)
        found = self._call("search_batch", name, vectors, using, limit, where, exact, False,
                           row_where)  # fmt: skip
        return self._reads.with_fields(
            name, tuple(with_payload), found, lambda ids: self._call("retrieve", name, ids)
        )

    def check(self) -> None:
        if self._closed or self._child.poll() is not None:
            raise StoreError(
                f"the store process (pid {self.pid}) for {self.data_dir} has "
                + ("been closed" if self._closed else f"exited (code {self._child.returncode})")
                + ": restart the server"
            )

    def close(self) -> None:
        if self._closed:
            return
        try:
            self._call("close")
        except StoreError:
            pass  # the child is gone: its collections are free
        finally:
            self._closed = True
            self._child.stdin.close()
            try:
                self._child.wait(timeout=START_SECONDS)
            except subprocess.TimeoutExpired:
                self._child.kill()
                self._child.wait()


def _forward(method: str):
    def call(self, *args, **kwargs):
        return self._call(method, *args, **kwargs)

    call.__name__ = call.__qualname__ = method
    call.__doc__ = getattr(EdgeStore, method).__doc__
    return call


for _method in dir(EdgeStore):
    own = _method.startswith("_") or _method in _BUILT_HERE or _method in vars(StoreProcess)
    if not own and callable(getattr(EdgeStore, _method)):
        setattr(StoreProcess, _method, _forward(_method))
StoreProcess.__abstractmethods__ = frozenset()


# -- the child ----------------------------------------------------------------------------
def _answer(store: EdgeStore, conn: Connection) -> None:
    """Answer one parent thread's calls until it hangs up."""
    allowed = {m for m in dir(EdgeStore) if not m.startswith("_")}
    while True:
        try:
            message = conn.recv_bytes()
        except (EOFError, OSError):
            return
        try:
            method, args, kwargs = pickle.loads(message)
            if method not in allowed:
                raise StoreError(f"no store call {method!r}")
            answer = (True, getattr(store, method)(*args, **kwargs))
        except Exception as exc:  # noqa: BLE001 - the caller gets it (a call that does not
            answer = (False, exc)  # unpickle here, e.g. a function this process cannot import)
        try:
            conn.send(answer)
        except (pickle.PicklingError, TypeError, AttributeError) as exc:
            what = f"{type(answer[1]).__name__}: {answer[1]}" if not answer[0] else repr(exc)
            conn.send((False, StoreError(f"the store's answer could not be sent back ({what})")))
        except OSError:
            return  # the calling thread is gone


def main() -> None:
    # Ctrl-C reaches the whole process group: the parent ends us (closing our stdin) once
    # its requests are answered.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    data_dir, holder = sys.argv[1], int(sys.argv[2])
    authkey = bytes.fromhex(sys.stdin.readline().strip())
    store = EdgeStore(data_dir, holder_pid=holder)
    listener = Listener(family="AF_UNIX", authkey=authkey)

    def accept() -> None:
        while True:
            try:
                conn = listener.accept()
            except (OSError, EOFError, AuthenticationError):
                continue  # a caller without the key, or one gone before it was answered
            threading.Thread(target=_answer, args=(store, conn), daemon=True).start()

    threading.Thread(target=accept, daemon=True, name="accept").start()
    print(listener.address, flush=True)
    sys.stdin.read()  # until the parent closes it, or dies
    store.close()
    listener.close()
    os._exit(0)


if __name__ == "__main__":
    main()
