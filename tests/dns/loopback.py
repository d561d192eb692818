"""A small threaded UDP+TCP DNS server around `Authority.answer`, for the tests that point real
validators (delv, unbound) at our answers over loopback."""

from __future__ import annotations

import socket
import threading
import time

from trustchain.dns.authority import Authority


class Loopback:
    """Serves `auth` on host:port (port 0 picks one) over UDP and TCP until `close`."""

    def __init__(self, auth: Authority, host: str = "127.0.0.1", port: int = 0) -> None:
        self.auth = auth
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.udp.bind((host, port))
        self.host, self.port = self.udp.getsockname()
        self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.tcp.bind((host, self.port))
        self.tcp.listen(16)
        for sock in (self.udp, self.tcp):
            sock.settimeout(0.2)
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._serve_udp, daemon=True),
                        threading.Thread(target=self._serve_tcp, daemon=True)]
        for thread in self.threads:
            thread.start()

    def _serve_udp(self) -> None:
        while not self.stop.is_set():
            try:
                data, addr = self.udp.recvfrom(65535)
            except (TimeoutError, OSError):
                continue
            out = self.auth.answer(data, int(time.time()), max_udp=1232, client=addr[0])
            if out:
                self.udp.sendto(out, addr)

    def _serve_tcp(self) -> None:
        while not self.stop.is_set():
            try:
                conn, addr = self.tcp.accept()
            except (TimeoutError, OSError):
                continue
            with conn:
                conn.settimeout(2)
                try:
                    while True:
                        head = conn.recv(2)
                        if len(head) < 2:
                            break
                        size = int.from_bytes(head, "big")
                        data = b""
                        while len(data) < size:
                            chunk = conn.recv(size - len(data))
                            if not chunk:
                                break
                            data += chunk
                        out = self.auth.answer(data, int(time.time()), max_udp=None, client=addr[0])
                        conn.sendall(len(out).to_bytes(2, "big") + out)
                except OSError:
                    pass

    def close(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=5)
        self.udp.close()
        self.tcp.close()
