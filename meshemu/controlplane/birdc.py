"""A client of BIRD's control socket, speaking its line protocol directly (no `birdc` process).

Owns connecting to a BIRD daemon's control socket, sending one command and collecting the reply
as (code, text) lines; it does not interpret replies (`meshemu.verify.bird_output` does). Only
the standard library is used, so the per-node agent can import it without cost.

The protocol (CZ-NIC/bird `doc/reply_codes`, `nest/cli.c` `cli_printf`, `client/client.c`
`server_got_reply`, same in v1.6.8 and v2.0.12): on connect BIRD sends `0001 BIRD <version>
ready.`; a command is one line ending in a newline; every reply line is `DDDD-text` (more lines
follow), `DDDD text` (the last line of the reply) or ` text` (a continuation: same code as the
line before), and `+text` is a spontaneous print-out (only with `echo`, ignored here). Codes
`0xxx` mean done, `1xxx` table rows, `2xxx` table headings, `8xxx` run-time errors, `9xxx`
parse errors of the command.

Socket paths are limited to 107 bytes: `sun_path` holds 108 bytes with the terminating NUL,
and BIRD itself refuses longer paths (`sysdep/unix/io.c` v2.0.12: "Socket path too long";
`client/client.c` `server_connect`). A longer path is refused here before connecting; the lab
must choose a short socket path for deep state folders.

One connection per command: BIRD serves several CLI connections at once and a Unix socket
connects in microseconds, so keeping none open leaves no state to repair after a BIRD restart.
"""

from __future__ import annotations

import os
import re
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from meshemu.errors import SpeakerError

MAX_SOCKET_PATH = 107  # bytes; sockaddr_un.sun_path is 108 including the terminating NUL

# `DDDD-` or `DDDD ` then text (client.c accepts exactly this: 4 digits then '-' or ' ').
_CODED = re.compile(r"(\d{4})([ -])(.*)\Z", re.DOTALL)
_WELCOME = re.compile(r"BIRD (\S+) ready\.\Z")


class BirdCommandError(SpeakerError):
    """BIRD answered a command with a run-time (8xxx) or parse (9xxx) error.

    `code` is the first error code, `bird_message` BIRD's own text for it (for example 8003
    "No protocols match" for `show protocols all <unknown>`, 8001 "Network not found" for a
    `show route for` without a route), so a caller can treat an expected error as "empty".
    """

    def __init__(self, message: str, code: int, bird_message: str) -> None:
        super().__init__(message)
        self.code = code
        self.bird_message = bird_message


@dataclass(frozen=True)
class BirdReply:
    """One command's reply: every line after the welcome, the final line included."""

    socket_path: str
    command: str
    welcome: str  # "BIRD 2.0.12 ready."
    lines: tuple[tuple[int, str], ...]  # (code, text); continuation lines carry the code before

    @property
    def version(self) -> str:
        """BIRD's version from the welcome line ("2.0.12", "1.6.8"), "" if it has another shape."""
        match = _WELCOME.match(self.welcome)
        return match.group(1) if match else ""

    @property
    def code(self) -> int:
        """The code of the final line (0 for a plain "OK")."""
        return self.lines[-1][0] if self.lines else 0

    def text(self) -> str:
        """The reply as `birdc` prints it without `-v`: the texts, one a line."""
        return "\n".join(text for code, text in self.lines if code != 0 or text)

    def __iter__(self) -> Iterator[tuple[int, str]]:
        return iter(self.lines)


class BirdControl:
    """BIRD's control socket at `socket_path` (BIRD's `-s` option)."""

    def __init__(self, socket_path: str | os.PathLike[str]) -> None:
        self.socket_path = os.fspath(socket_path)
        size = len(os.fsencode(self.socket_path))
        if size > MAX_SOCKET_PATH:
            raise SpeakerError(
                f"BIRD control socket path {self.socket_path} is {size} bytes long; a Unix "
                f"socket path may have at most {MAX_SOCKET_PATH} (use a shorter state folder)"
            )

    def command(self, text: str, timeout: float = 2.0) -> BirdReply:
        """Send one command (`show protocols all`) and return its reply.

        `timeout` bounds the whole exchange (connect, welcome, reply). Raises SpeakerError when
        the socket is missing or refuses, BIRD does not answer in time or answers something
        that is not its protocol, and BirdCommandError (a SpeakerError) for 8xxx/9xxx replies.
        """
        if "\n" in text or "\r" in text:
            raise ValueError(f"a BIRD command is one line, got {text!r}")
        deadline = time.monotonic() + timeout
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            self._connect(sock, deadline)
            reader = _LineReader(sock, self.socket_path, deadline)
            welcome = reader.reply(f"connecting to BIRD at {self.socket_path}")
            if [code for code, _ in welcome] != [1]:
                raise SpeakerError(
                    f"{self.socket_path} is not a BIRD control socket: it greeted with {welcome!r}"
                )
            self._send(sock, text, deadline)
            lines = reader.reply(f"BIRD at {self.socket_path} answering {text!r}")
        errors = [(code, msg) for code, msg in lines if code >= 8000]
        if errors:
            code, msg = errors[0]
            kind = "could not parse" if code >= 9000 else "failed on"
            raise BirdCommandError(
                f"BIRD at {self.socket_path} {kind} {text!r}: {code} {msg}", code, msg
            )
        return BirdReply(self.socket_path, text, welcome[0][1], tuple(lines))

    def _connect(self, sock: socket.socket, deadline: float) -> None:
        sock.settimeout(max(deadline - time.monotonic(), 0.001))
        try:
            sock.connect(self.socket_path)
        except FileNotFoundError:
            raise SpeakerError(
                f"BIRD control socket {self.socket_path} does not exist (BIRD not running?)"
            ) from None
        except ConnectionRefusedError:
            raise SpeakerError(
                f"BIRD control socket {self.socket_path} refused the connection "
                "(BIRD stopped and left its socket behind?)"
            ) from None
        except TimeoutError:
            raise SpeakerError(f"connecting to BIRD at {self.socket_path} timed out") from None
        except OSError as exc:
            raise SpeakerError(
                f"cannot connect to BIRD control socket {self.socket_path}: {exc.strerror or exc}"
            ) from None

    def _send(self, sock: socket.socket, text: str, deadline: float) -> None:
        sock.settimeout(max(deadline - time.monotonic(), 0.001))
        try:
            sock.sendall(text.encode() + b"\n")
        except TimeoutError:
            raise SpeakerError(
                f"sending {text!r} to BIRD at {self.socket_path} timed out"
            ) from None
        except OSError as exc:
            raise SpeakerError(
                f"sending {text!r} to BIRD at {self.socket_path} failed: {exc.strerror or exc}"
            ) from None


class _LineReader:
    """Reads reply lines from BIRD, keeping what arrived past the end of one reply."""

    def __init__(self, sock: socket.socket, socket_path: str, deadline: float) -> None:
        self.sock = sock
        self.socket_path = socket_path
        self.deadline = deadline
        self.buffer = b""

    def _line(self, doing: str) -> str:
        while b"\n" not in self.buffer:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise SpeakerError(f"{doing}: no complete reply in time")
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                raise SpeakerError(f"{doing}: no complete reply in time") from None
            except OSError as exc:
                raise SpeakerError(f"{doing}: {exc.strerror or exc}") from None
            if not chunk:
                raise SpeakerError(f"{doing}: BIRD closed the connection before the reply ended")
            self.buffer += chunk
        raw, self.buffer = self.buffer.split(b"\n", 1)
        # BIRD prints interface names and descriptions as they are: never fail on their bytes.
        return raw.decode("utf-8", errors="replace")

    def reply(self, doing: str) -> list[tuple[int, str]]:
        """Lines up to and including the final `DDDD ` one."""
        lines: list[tuple[int, str]] = []
        while True:
            try:
                final = _decode(self._line(doing), lines)
            except ValueError as exc:
                raise SpeakerError(f"{doing}: {exc}") from None
            if final:
                return lines


def _decode(line: str, lines: list[tuple[int, str]]) -> bool:
    """Add one received line to `lines`; True when it ends the reply. ValueError if malformed."""
    if line.startswith("+"):
        return False  # spontaneous print-out (log echo), not part of the reply
    if line.startswith(" "):
        if not lines:
            raise ValueError(f"reply starts with a continuation line {line!r}")
        lines.append((lines[-1][0], line[1:]))
        return False
    match = _CODED.match(line)
    if not match:
        raise ValueError(f"not a BIRD reply line: {line!r}")
    lines.append((int(match.group(1)), match.group(3)))
    return match.group(2) == " "


def reply_lines(raw: str) -> tuple[tuple[int, str], ...]:
    """The (code, text) lines of a recorded exchange (what BIRD sent, welcome included).

    For replaying captured replies (tests, debugging) without a socket; ValueError if a line is
    not BIRD's protocol.
    """
    lines: list[tuple[int, str]] = []
    # Split on newlines only, as the socket reader does (str.splitlines also splits on \f, \x1c...).
    for line in raw.removesuffix("\n").split("\n") if raw else ():
        _decode(line, lines)
    return tuple(lines)


def socket_path_fits(path: str | Path) -> bool:
    """Whether `path` is short enough for a Unix socket (and so for BIRD's `-s`)."""
    return len(os.fsencode(os.fspath(path))) <= MAX_SOCKET_PATH
