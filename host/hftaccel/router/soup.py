"""SoupBinTCP 4.0 client connection over asyncio streams.

Packets are framed and parsed with :mod:`hftaccel.golden.ouch` (``soup_encode`` /
``soup_split``) from the layouts of :mod:`hftaccel.spec.ouch`. What this module adds is the
session behaviour of the SoupBinTCP 4.0 specification:

* Login (section 2.3.1): the first packet on a connection is a Login Request naming the session
  (blank: the current one) and the sequence number of the next Sequenced Data packet wanted;
  the server answers Login Accepted (2.2.1: session and the sequence number of the next
  sequenced packet it will send) or Login Rejected (2.2.2: ``A`` not authorized, ``S`` session
  not available).
* Sequenced Data (2.2.3) carries no number on the wire (section 1.2, protocol flow: both sides
  count; the first sequenced message of a session is 1): the first packet after Login Accepted
  has the number Login Accepted stated and every later one is one more. A client reconnecting
  names the current session and its next expected number.
* Heartbeats (section 1.3; packets 2.2.4, 2.3.3): each side sends one when it has sent nothing
  for the heartbeat interval (1 s in the specification), and a side that hears nothing for the
  timeout (typically 15 s) treats the link as lost. Both are parameters here so tests run fast.
* Logout Request (2.3.4) ends the session from the client; End of Session (2.2.5) ends it from
  the server; Debug packets (2.1) are ignored.

Malformed framing (a Packet Length of 0, a packet type the server may not send, Login
Accepted after login) cannot be resynchronised: the connection is closed cleanly (Logout
Request, then close) and :class:`SoupProtocolError` names the byte offset in the stream.
"""

from __future__ import annotations

import asyncio
import time

from hftaccel.golden import ouch
from hftaccel.spec import ouch as spec

__all__ = ["SoupClient", "SoupError", "SoupProtocolError", "LoginRejected"]


class SoupError(ConnectionError):
    """The SoupBinTCP session could not be established or was lost."""


class LoginRejected(SoupError):
    """Login Rejected (SoupBinTCP 2.2.2); ``code`` is ``A`` or ``S``."""

    def __init__(self, code: str):
        super().__init__(f"SoupBinTCP Login Rejected: {code!r} "
                         f"({spec.SOUP_LOGIN_REJECT_CODES.get(code, 'unknown reason')})")
        self.code = code


class SoupProtocolError(SoupError):
    """Bytes from the server that are not valid SoupBinTCP 4.0.

    Attributes
    ----------
    offset : int
        Byte offset in the connection's received stream.
    next_seq : int
        Sequence number of the next Sequenced Data packet expected at that point.
    """

    def __init__(self, message: str, *, offset: int, next_seq: int):
        super().__init__(f"SoupBinTCP stream @ byte {offset} (next sequence number {next_seq}): "
                         f"{message}")
        self.offset = offset
        self.next_seq = next_seq


class SoupClient:
    """One client connection of a SoupBinTCP 4.0 session.

    Parameters
    ----------
    host, port : str, int
    username, password : str
        Login Request fields (6 and 10 characters at most).
    on_sequenced : callable
        ``on_sequenced(batch)`` with ``batch`` a list of ``(sequence number, payload bytes,
        stream offset of the payload)`` for the Sequenced Data packets of one read, in order.
    on_closed : callable
        ``on_closed(reason, error)`` once when the connection ends: ``reason`` is ``"logout"``,
        ``"end_of_session"``, ``"lost"`` (EOF, reset or heartbeat timeout) or ``"protocol"``
        (``error`` is the :class:`SoupProtocolError`).
    heartbeat_s : float
        Send a Client Heartbeat after this long without sending (spec: 1 s).
    timeout_s : float
        Treat the link as lost after this long without receiving (spec: 15 s).
    """

    def __init__(self, host: str, port: int, *, username: str, password: str, on_sequenced,
                 on_closed, heartbeat_s: float = 1.0, timeout_s: float = 15.0):
        self.host, self.port = host, port
        self.username, self.password = username, password
        self.on_sequenced, self.on_closed = on_sequenced, on_closed
        self.heartbeat_s, self.timeout_s = heartbeat_s, timeout_s
        self.reader = self.writer = None
        self.session = b""
        self.next_seq = 0
        self.stream_pos = 0
        self.heartbeats_sent = self.heartbeats_received = 0
        self._buf = b""
        self._tasks = []
        self._closed = False
        self._logging_out = False
        self._last_sent = self._last_recv = time.monotonic()

    @property
    def is_open(self) -> bool:
        return self.writer is not None and not self._closed

    async def login(self, session: bytes = b"", sequence: int = 1, *, timeout: float = 5.0):
        """Connect and log in; return ``(session, next sequence number)`` of Login Accepted.

        Raises
        ------
        LoginRejected, SoupProtocolError, SoupError, OSError
        """
        self.reader, self.writer = await asyncio.wait_for(
            asyncio.open_connection(self.host, self.port), timeout)
        self._send(ouch.soup_encode("client", "L", {
            "username": self.username, "password": self.password,
            "requested_session": bytes(session).strip(), "requested_sequence_number": sequence}))
        try:
            while True:
                packets = await asyncio.wait_for(self._read_packets(), timeout)
                if packets is None:
                    raise SoupError(f"{self.host}:{self.port} closed the connection during login")
                for i, (ptype, payload, pos) in enumerate(packets):
                    if ptype in ("H", "+"):
                        continue
                    if ptype == "J":
                        dec = ouch.soup_decode("server", ouch.soup_packet(ptype, payload))
                        raise LoginRejected(dec["reject_reason_code"].decode())
                    if ptype != "A":
                        raise SoupProtocolError(f"packet {ptype!r} before Login Accepted",
                                                offset=pos, next_seq=self.next_seq)
                    dec = ouch.soup_decode("server", ouch.soup_packet(ptype, payload),
                                           offset=pos, source="Login Accepted")
                    self.session = dec["session"].ljust(10, b" ")
                    self.next_seq = dec["sequence_number"]
                    rest = packets[i + 1:]
                    self._tasks = [asyncio.ensure_future(self._read_loop(rest)),
                                   asyncio.ensure_future(self._heartbeat_loop())]
                    return self.session, self.next_seq
        except BaseException:
            self._abort()
            raise

    def send(self, payload: bytes) -> None:
        """Send one OUCH message in an Unsequenced Data packet (SoupBinTCP 2.3.2)."""
        if not self.is_open:
            raise SoupError("SoupBinTCP connection is not open")
        self._send(ouch.soup_packet("U", payload))

    def _send(self, packet: bytes) -> None:
        self.writer.write(packet)
        self._last_sent = time.monotonic()

    async def logout(self, *, timeout: float = 2.0) -> None:
        """Send a Logout Request (2.3.4) and wait for the server to close the connection."""
        if not self.is_open:
            return
        self._logging_out = True
        self._send(ouch.soup_encode("client", "O"))
        reader_task = self._tasks[0] if self._tasks else None
        if reader_task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(reader_task), timeout)
            except asyncio.TimeoutError:
                pass
        self._finish("logout", None)

    def close(self) -> None:
        """Drop the connection without a logout (as a crash or a cable pull would)."""
        self._finish("lost", None, notify=False)

    # --------------------------------------------------------------------------- internals

    async def _read_packets(self):
        data = await self.reader.read(65536)
        if not data:
            return None
        self._last_recv = time.monotonic()
        base = self.stream_pos - len(self._buf)
        self._buf += data
        self.stream_pos += len(data)
        try:
            packets, self._buf = ouch.soup_split(self._buf, partial=True)
        except ouch.OuchError as e:
            raise SoupProtocolError(str(e).split(": ", 1)[-1], offset=base + (e.offset or 0),
                                    next_seq=self.next_seq) from None
        return [(t, p, base + pos) for t, p, pos in packets]

    async def _read_loop(self, pending):
        reason, error = "lost", None
        try:
            packets = pending
            while True:
                batch = []
                for ptype, payload, pos in packets:
                    if ptype == "S":
                        batch.append((self.next_seq, payload, pos + spec.SOUP_HEADER_SIZE))
                        self.next_seq += 1
                    elif ptype == "H":
                        self.heartbeats_received += 1
                    elif ptype == "+":
                        pass
                    elif ptype == "Z":
                        if batch:
                            self.on_sequenced(batch)
                        reason = "end_of_session"
                        return
                    else:
                        if batch:
                            self.on_sequenced(batch)
                        name = spec.SOUP_FROM_SERVER.get(ptype)
                        what = (f"unexpected {name} packet after login" if name else
                                f"packet type {ptype!r} is not a SoupBinTCP 4.0 server packet")
                        raise SoupProtocolError(what, offset=pos, next_seq=self.next_seq)
                if batch:
                    self.on_sequenced(batch)
                packets = await self._read_packets()
                if packets is None:
                    reason = "logout" if self._logging_out else "lost"
                    return
        except SoupProtocolError as e:
            reason, error = "protocol", e
            try:  # close cleanly: tell the server we are leaving
                self._send(ouch.soup_encode("client", "O"))
            except Exception:  # pragma: no cover - the socket may be gone already
                pass
        except (ConnectionError, OSError):
            reason = "logout" if self._logging_out else "lost"
        except asyncio.CancelledError:
            return
        finally:
            if not self._closed:
                self._finish(reason, error)

    async def _heartbeat_loop(self):
        try:
            tick = min(self.heartbeat_s, self.timeout_s) / 4
            while not self._closed:
                await asyncio.sleep(tick)
                now = time.monotonic()
                if now - self._last_recv > self.timeout_s:
                    self._finish("lost", SoupError(f"no data from the server for "
                                                   f"{self.timeout_s:g} s"))
                    return
                if now - self._last_sent >= self.heartbeat_s:
                    self._send(ouch.soup_encode("client", "R"))
                    self.heartbeats_sent += 1
        except asyncio.CancelledError:
            return
        except (ConnectionError, OSError):
            self._finish("lost", None)

    def _abort(self):
        if self.writer is not None:
            self.writer.transport.abort()
        self._closed = True

    def _finish(self, reason, error, notify: bool = True):
        if self._closed:
            return
        self._closed = True
        current = asyncio.current_task() if asyncio.get_event_loop().is_running() else None
        for t in self._tasks:
            if t is not current:
                t.cancel()
        if self.writer is not None:
            if reason in ("lost",) and not notify:
                self.writer.transport.abort()
            else:
                self.writer.close()
        if notify:
            self.on_closed(reason, error)
