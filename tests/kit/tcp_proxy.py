"""A loopback TCP proxy that can make its connections go silent, for tests.

A silent network drop (an RDS Multi-AZ failover, a lost route) sends no FIN and no
RST: the client's socket stays open and nothing more arrives. blackhole() does that
to every connection through the proxy: bytes stop flowing both ways, and no socket
is closed. Connections opened during the blackhole hang the same way, as when the
database's name still points at the old primary; restore() forwards new
connections again (the new primary is up), while the silenced ones stay dead, as
they would.

The kernel still acknowledges packets and keepalives on the proxy's sockets, so
what this exercises is the clients' own stall detection, the case of a proxy or
load balancer that stays up in front of a database that is gone.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading


class _Pair:
    def __init__(self, client: socket.socket, upstream: socket.socket | None, silent: bool):
        self.client, self.upstream = client, upstream
        self.silent = threading.Event()
        if silent:
            self.silent.set()

    def close(self) -> None:
        for sock in (self.client, self.upstream):
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.close()


class TcpProxy:
    """Forwards 127.0.0.1:<port> (a free port, see .port) to target_host:target_port,
    one thread per connection. Use as a context manager, or call close()."""

    def __init__(self, target_port: int, target_host: str = "127.0.0.1"):
        self.target = (target_host, target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port: int = self._listener.getsockname()[1]
        self._pairs: list[_Pair] = []
        self._lock = threading.Lock()
        self._silent_new = False
        self._closed = threading.Event()
        self._acceptor = threading.Thread(target=self._accept_loop, name="tcp-proxy-accept", daemon=True)
        self._acceptor.start()

    def __enter__(self) -> TcpProxy:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def blackhole(self) -> int:
        """Silences every open connection for good, and new ones until restore().
        Returns how many open connections were silenced."""
        with self._lock:
            self._silent_new = True
            live = [p for p in self._pairs if not p.silent.is_set()]
            for pair in live:
                pair.silent.set()
            return len(live)

    def restore(self) -> None:
        """Forwards connections opened from now on; silenced ones stay silent."""
        with self._lock:
            self._silent_new = False

    def close(self) -> None:
        """Stops accepting and closes every socket (the peers then see a normal close)."""
        self._closed.set()
        self._acceptor.join(timeout=5)
        self._listener.close()
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for pair in pairs:
            pair.close()

    def _accept_loop(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except (TimeoutError, socket.timeout):
                continue
            except OSError:
                return
            with self._lock:
                silent = self._silent_new
            upstream = None
            if not silent:
                try:
                    upstream = socket.create_connection(self.target, timeout=5)
                except OSError:
                    client.close()  # the target refused: pass that on
                    continue
            pair = _Pair(client, upstream, silent)
            with self._lock:
                self._pairs.append(pair)
            if upstream is not None:
                threading.Thread(target=self._pump, args=(pair,), name="tcp-proxy-pump", daemon=True).start()

    def _pump(self, pair: _Pair) -> None:
        other = {pair.client: pair.upstream, pair.upstream: pair.client}
        with selectors.DefaultSelector() as selector:
            for sock in other:
                sock.setblocking(True)
                selector.register(sock, selectors.EVENT_READ)
            while not pair.silent.is_set() and not self._closed.is_set():
                for key, _ in selector.select(timeout=0.1):
                    if pair.silent.is_set():
                        return  # what arrived from now on is lost in the drop
                    try:
                        data = key.fileobj.recv(65536)
                        if data:
                            other[key.fileobj].sendall(data)
                            continue
                    except OSError:
                        pass
                    # A real close (or reset) on one side is passed on to the other.
                    with self._lock:
                        if pair in self._pairs:
                            self._pairs.remove(pair)
                    pair.close()
                    return
