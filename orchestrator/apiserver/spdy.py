"""SPDY/3.1 framing, the server's side, as far as kubectl's port-forward uses it.

kubectl (1.31 and later) tunnels SPDY inside a WebSocket for `port-forward` (subprotocol
`SPDY/3.1+portforward.k8s.io`, the SPDY bytes in binary messages, not aligned to frames), and its
SPDY side is moby/spdystream: streams opened with SYN_STREAM and answered with SYN_REPLY, DATA
with FIN for half-closes, RST_STREAM, PING every 10 s (echoed), GOAWAY at the end. spdystream
does no flow control: it neither sends WINDOW_UPDATE nor honours it, so neither do we. No
maintained Python SPDY library exists (the protocol was retired for HTTP/2), hence this one.

Sans-I/O: `Parser.feed(bytes)` returns the frames completed so far; the encoders return
bytes. Header blocks are zlib streams with the protocol's dictionary, one per direction for
the whole connection (each block ends with a sync flush), and their lengths are 32-bit
(SPDY/3, not 2). `syn_stream` is the client's frame, for tests.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field

VERSION = 3
SYN_STREAM, SYN_REPLY, RST_STREAM, SETTINGS, PING, GOAWAY, HEADERS, WINDOW_UPDATE = 1, 2, 3, 4, 6, 7, 8, 9
FLAG_FIN, FLAG_UNIDIRECTIONAL = 0x01, 0x02
PROTOCOL_ERROR, INVALID_STREAM, REFUSED_STREAM, CANCEL, INTERNAL_ERROR = 1, 2, 3, 5, 6
MAX_DATA = (1 << 24) - 1
MAX_HEADER_BLOCK = 1 << 20  # decompressed; a port-forward's are some 60 bytes

# SPDY/3 section 2.6.10.1: the dictionary both sides' header compressors start from.
_WORDS = (
    b"options head post put delete trace accept accept-charset accept-encoding accept-language "
    b"accept-ranges age allow authorization cache-control connection content-base content-encoding "
    b"content-language content-length content-location content-md5 content-range content-type date "
    b"etag expect expires from host if-match if-modified-since if-none-match if-range "
    b"if-unmodified-since last-modified location max-forwards pragma proxy-authenticate "
    b"proxy-authorization range referer retry-after server te trailer transfer-encoding upgrade "
    b"user-agent vary via warning www-authenticate method get status"
).split() + [b"200 OK"] + b"version HTTP/1.1 url public set-cookie keep-alive origin".split()
_TAIL = (
    b"100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505"
    b"203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request401 "
    b"Unauthorized403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented503 "
    b"Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, "
    b"Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,image/jpg,image/gif,application/xml,"
    b"application/xhtml+xml,text/plain,text/javascript,publicprivatemax-age=gzip,deflate,sdch"
    b"charset=utf-8charset=iso-8859-1,utf-,*,enq=0."
)
DICTIONARY = b"".join(struct.pack(">I", len(w)) + w for w in _WORDS) + _TAIL


class ProtocolError(Exception):
    """The peer broke the protocol: the connection cannot go on."""


@dataclass(frozen=True)
class Data:
    stream_id: int
    data: bytes
    fin: bool


@dataclass(frozen=True)
class Control:
    type: int
    flags: int
    stream_id: int = 0  # SYN_STREAM, SYN_REPLY, RST_STREAM, HEADERS, WINDOW_UPDATE; GOAWAY's last good one
    headers: dict[str, list[str]] = field(default_factory=dict)  # SYN_STREAM, SYN_REPLY, HEADERS
    status: int = 0  # RST_STREAM, GOAWAY
    ping_id: int = 0  # PING

    @property
    def fin(self) -> bool:
        return bool(self.flags & FLAG_FIN)


Frame = Data | Control


def _header_block(headers: dict[str, list[str]]) -> bytes:
    out = [struct.pack(">I", len(headers))]
    for name, values in headers.items():
        n, v = name.lower().encode(), "\0".join(values).encode()
        out += [struct.pack(">I", len(n)), n, struct.pack(">I", len(v)), v]
    return b"".join(out)


def _parse_header_block(block: bytes) -> dict[str, list[str]]:
    try:
        (count,), at = struct.unpack_from(">I", block), 4
        headers: dict[str, list[str]] = {}
        for _ in range(count):
            (n,) = struct.unpack_from(">I", block, at)
            name = block[at + 4:at + 4 + n].decode()
            at += 4 + n
            (v,) = struct.unpack_from(">I", block, at)
            value = block[at + 4:at + 4 + v].decode()
            at += 4 + v
            if at > len(block):
                raise ProtocolError("header block shorter than it says")
            headers[name] = value.split("\0")
        return headers
    except (struct.error, UnicodeDecodeError) as e:
        raise ProtocolError(f"malformed header block: {e}") from None


class Parser:
    """Frames out of a byte stream that arrives in arbitrary pieces."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._inflate = zlib.decompressobj(zdict=DICTIONARY)

    def _headers(self, compressed: bytes) -> dict[str, list[str]]:
        try:
            block = self._inflate.decompress(compressed, MAX_HEADER_BLOCK)
        except zlib.error as e:
            raise ProtocolError(f"header block does not inflate: {e}") from None
        if self._inflate.unconsumed_tail:
            raise ProtocolError("header block too large")
        return _parse_header_block(block)

    def feed(self, data: bytes) -> list[Frame]:
        self._buf += data
        frames: list[Frame] = []
        while len(self._buf) >= 8:
            first, flags_len = struct.unpack_from(">II", self._buf)
            length = flags_len & 0xFFFFFF
            if len(self._buf) < 8 + length:
                break
            payload = bytes(self._buf[8:8 + length])
            del self._buf[:8 + length]
            flags = flags_len >> 24
            if not first & 0x80000000:
                frames.append(Data(first & 0x7FFFFFFF, payload, bool(flags & FLAG_FIN)))
                continue
            version, ftype = (first >> 16) & 0x7FFF, first & 0xFFFF
            if version != VERSION:
                raise ProtocolError(f"SPDY version {version}, not {VERSION}")
            frames.append(self._control(ftype, flags, payload))
        return frames

    def _control(self, ftype: int, flags: int, p: bytes) -> Control:
        try:
            if ftype == SYN_STREAM:
                sid, _assoc = struct.unpack_from(">II", p)
                return Control(ftype, flags, sid & 0x7FFFFFFF, headers=self._headers(p[10:]))
            if ftype in (SYN_REPLY, HEADERS):
                (sid,) = struct.unpack_from(">I", p)
                return Control(ftype, flags, sid & 0x7FFFFFFF, headers=self._headers(p[4:]))
            if ftype == RST_STREAM:
                sid, status = struct.unpack_from(">II", p)
                return Control(ftype, flags, sid & 0x7FFFFFFF, status=status)
            if ftype == PING:
                return Control(ftype, flags, ping_id=struct.unpack_from(">I", p)[0])
            if ftype == GOAWAY:
                last, status = struct.unpack_from(">II", p) if len(p) >= 8 else (*struct.unpack_from(">I", p), 0)
                return Control(ftype, flags, last & 0x7FFFFFFF, status=status)
            if ftype == WINDOW_UPDATE:
                (sid,) = struct.unpack_from(">I", p)
                return Control(ftype, flags, sid & 0x7FFFFFFF)
        except struct.error:
            raise ProtocolError(f"control frame {ftype} too short ({len(p)} bytes)") from None
        return Control(ftype, flags)  # SETTINGS and unknown types: nothing we act on


class Writer:
    """Frames to send; header blocks share one compressor, as the protocol requires."""

    def __init__(self) -> None:
        self._deflate = zlib.compressobj(9, zlib.DEFLATED, 15, 9, zlib.Z_DEFAULT_STRATEGY, zdict=DICTIONARY)

    def _compress(self, headers: dict[str, list[str]]) -> bytes:
        return self._deflate.compress(_header_block(headers)) + self._deflate.flush(zlib.Z_SYNC_FLUSH)

    @staticmethod
    def _control(ftype: int, flags: int, payload: bytes) -> bytes:
        return struct.pack(">HHI", 0x8000 | VERSION, ftype, (flags << 24) | len(payload)) + payload

    def syn_reply(self, stream_id: int, headers: dict[str, list[str]] | None = None, *, fin: bool = False) -> bytes:
        return self._control(SYN_REPLY, FLAG_FIN if fin else 0,
                             struct.pack(">I", stream_id) + self._compress(headers or {}))

    def syn_stream(self, stream_id: int, headers: dict[str, list[str]], *, fin: bool = False) -> bytes:
        return self._control(SYN_STREAM, FLAG_FIN if fin else 0,
                             struct.pack(">IIBB", stream_id, 0, 0, 0) + self._compress(headers))

    def rst_stream(self, stream_id: int, status: int) -> bytes:
        return self._control(RST_STREAM, 0, struct.pack(">II", stream_id, status))

    def ping(self, ping_id: int) -> bytes:
        return self._control(PING, 0, struct.pack(">I", ping_id))

    def goaway(self, last_good: int, status: int = 0) -> bytes:
        return self._control(GOAWAY, 0, struct.pack(">II", last_good, status))

    @staticmethod
    def data(stream_id: int, data: bytes, *, fin: bool = False) -> bytes:
        out = []
        for at in range(0, max(len(data), 1), MAX_DATA):
            piece = data[at:at + MAX_DATA]
            last = at + MAX_DATA >= len(data)
            out.append(struct.pack(">II", stream_id & 0x7FFFFFFF, ((FLAG_FIN if fin and last else 0) << 24) | len(piece))
                       + piece)
        return b"".join(out)
