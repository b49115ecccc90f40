"""BirdControl against a fake BIRD on a Unix socket that replays replies captured from BIRD 2.0.12
(tests/unit/data/bird/*.raw: the exact bytes BIRD sent, welcome line first)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from meshemu.controlplane.birdc import (
    MAX_SOCKET_PATH,
    BirdCommandError,
    BirdControl,
    reply_lines,
    socket_path_fits,
)
from meshemu.errors import EXIT_ENVIRONMENT, SpeakerError

DATA = Path(__file__).parent / "data" / "bird"


def _recorded(name: str) -> tuple[bytes, bytes]:
    """(welcome, reply) bytes of a captured exchange."""
    raw = (DATA / name).read_bytes()
    welcome, reply = raw.split(b"\n", 1)
    return welcome + b"\n", reply


class FakeBird:
    """Serves one connection: sends `welcome`, reads one command line, sends `reply` (None: stays
    silent until closed), `chunk` bytes at a time."""

    def __init__(
        self,
        path: Path,
        reply: bytes | None,
        welcome: bytes = b"0001 BIRD 2.0.12 ready.\n",
        chunk: int = 0,
    ) -> None:
        self.reply, self.welcome, self.chunk = reply, welcome, chunk
        self.received: list[bytes] = []
        self.stop = threading.Event()
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(str(path))
        self.listener.listen(1)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _send(self, conn: socket.socket, data: bytes) -> None:
        if not self.chunk:
            conn.sendall(data)
            return
        for i in range(0, len(data), self.chunk):
            conn.sendall(data[i : i + self.chunk])
            time.sleep(0.0005)

    def _serve(self) -> None:
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return
        with conn:
            self._send(conn, self.welcome)
            data = b""
            while not data.endswith(b"\n"):
                part = conn.recv(1024)
                if not part:
                    return
                data += part
            self.received.append(data)
            if self.reply is None:
                self.stop.wait(10)
            else:
                self._send(conn, self.reply)

    def close(self) -> None:
        self.stop.set()
        self.listener.close()
        self.thread.join(5)


Serve = Callable[..., tuple[BirdControl, FakeBird]]


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Serve]:
    servers: list[FakeBird] = []

    def start(
        reply: bytes | None, welcome: bytes = b"0001 BIRD 2.0.12 ready.\n", chunk: int = 0
    ) -> tuple[BirdControl, FakeBird]:
        path = tmp_path / f"bird{len(servers)}.ctl"
        server = FakeBird(path, reply, welcome=welcome, chunk=chunk)
        servers.append(server)
        return BirdControl(path), server

    yield start
    for server in servers:
        server.close()


def test_a_reply_is_read_to_its_final_line_with_continuations_carrying_the_code(
    serve: Serve,
) -> None:
    welcome, reply = _recorded("rr-show-protocols.raw")
    bird, server = serve(reply, welcome=welcome)
    got = bird.command("show protocols")
    assert server.received == [b"show protocols\n"]
    assert got.welcome == "BIRD 2.0.12 ready."
    assert got.version == "2.0.12"
    assert got.lines[0] == (2002, "Name       Proto      Table      State  Since         Info")
    assert got.lines[1] == (1002, "device1    Device     ---        up     06:58:51.945  ")
    # ' s4 ...' is a continuation: it keeps 1002 and loses only the marker space
    assert got.lines[2] == (1002, "s4         Static     master4    up     06:58:51.945  ")
    assert got.lines[-1] == (0, "")
    assert len(got.lines) == 8
    assert got.code == 0
    assert got.text().splitlines()[-1].startswith("down_d     BGP")


def test_route_lines_keep_tabs_and_the_blank_prefix_of_alternatives(serve: Serve) -> None:
    welcome, reply = _recorded("rr-show-route.raw")
    bird, _ = serve(reply, welcome=welcome)
    lines = bird.command("show route").lines
    assert lines[0] == (1007, "Table master4:")
    assert (1007, "\tdev lo") in lines
    alternative = next(t for _, t in lines if "[ebgp_c" in t and "10.70" not in t)
    assert alternative.startswith(" " * 21 + "unicast [ebgp_c")
    assert (1007, "") in lines  # the empty line between the two tables
    assert (1007, "Table master6:") in lines


def test_a_reply_arriving_a_few_bytes_at_a_time_is_the_same(serve: Serve) -> None:
    welcome, reply = _recorded("rr-show-route-all.raw")
    whole, _ = serve(reply, welcome=welcome)
    trickle, _ = serve(reply, welcome=welcome, chunk=7)
    assert trickle.command("show route all").lines == whole.command("show route all").lines


def test_the_live_reader_and_the_replay_decoder_agree() -> None:
    raw = (DATA / "rr-show-protocols-all.raw").read_text()
    lines = reply_lines(raw)
    assert lines[0] == (1, "BIRD 2.0.12 ready.")
    assert lines[-1] == (0, "")
    assert sum(1 for code, _ in lines if code == 1002) == 6


def test_a_run_time_error_raises_with_its_code_and_the_socket(serve: Serve) -> None:
    welcome, reply = _recorded("rr-error-no-protocols-match.raw")
    bird, _ = serve(reply, welcome=welcome)
    with pytest.raises(BirdCommandError) as caught:
        bird.command('show protocols all "nosuch*"')
    assert caught.value.code == 8003
    assert caught.value.bird_message == "No protocols match"
    assert bird.socket_path in str(caught.value)
    assert isinstance(caught.value, SpeakerError)
    assert caught.value.exit_code == EXIT_ENVIRONMENT


def test_a_parse_error_raises(serve: Serve) -> None:
    welcome, reply = _recorded("rr-error-parse.raw")
    bird, _ = serve(reply, welcome=welcome)
    with pytest.raises(BirdCommandError, match="could not parse 'show nonsense'") as caught:
        bird.command("show nonsense")
    assert caught.value.code == 9001


def test_route_not_found_is_an_error_a_caller_can_recognise(serve: Serve) -> None:
    welcome, reply = _recorded("rr-error-network-not-found.raw")
    bird, _ = serve(reply, welcome=welcome)
    with pytest.raises(BirdCommandError) as caught:
        bird.command("show route for 10.99.0.1")
    assert (caught.value.code, caught.value.bird_message) == (8001, "Network not found")


def test_spontaneous_lines_are_not_part_of_the_reply(serve: Serve) -> None:
    bird, _ = serve(b"+Some log echo\n1000-BIRD 2.0.12\n+more\n0013 Daemon is up and running\n")
    assert bird.command("show status").lines == (
        (1000, "BIRD 2.0.12"),
        (13, "Daemon is up and running"),
    )


def test_a_missing_socket_is_named(tmp_path: Path) -> None:
    path = tmp_path / "absent.ctl"
    with pytest.raises(SpeakerError, match="does not exist") as caught:
        BirdControl(path).command("show protocols")
    assert str(path) in str(caught.value)


def test_a_socket_nobody_listens_on_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "stale.ctl"
    left = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    left.bind(str(path))  # the file exists, but nothing listens: what a killed BIRD leaves
    left.close()
    with pytest.raises(SpeakerError, match="refused") as caught:
        BirdControl(path).command("show protocols")
    assert str(path) in str(caught.value)


def test_a_silent_bird_times_out_in_time(serve: Serve) -> None:
    bird, _ = serve(None)
    start = time.monotonic()
    with pytest.raises(SpeakerError, match="in time") as caught:
        bird.command("show route", timeout=0.3)
    assert time.monotonic() - start < 2.0
    assert bird.socket_path in str(caught.value)


def test_a_reply_cut_short_raises(serve: Serve) -> None:
    bird, _ = serve(b"2002-Name       Proto\n1002-device1    Device\n")
    with pytest.raises(SpeakerError, match="closed the connection"):
        bird.command("show protocols")


def test_something_that_is_not_bird_is_refused(serve: Serve) -> None:
    bird, _ = serve(b"0000 \n", welcome=b"SSH-2.0-OpenSSH_9.2\n")
    with pytest.raises(SpeakerError, match="not a BIRD reply line"):
        bird.command("show protocols")


def test_a_greeting_with_another_code_is_refused(serve: Serve) -> None:
    bird, _ = serve(b"0000 \n", welcome=b"0000 hello\n")
    with pytest.raises(SpeakerError, match="not a BIRD control socket"):
        bird.command("show protocols")


def test_a_path_longer_than_a_unix_socket_allows_is_refused_before_connecting() -> None:
    longest = "/" + "s" * (MAX_SOCKET_PATH - 1)
    assert socket_path_fits(longest)
    BirdControl(longest)  # accepted: exactly 107 bytes
    too_long = longest + "x"
    assert not socket_path_fits(too_long)
    with pytest.raises(SpeakerError, match="108 bytes long"):
        BirdControl(too_long)


def test_a_command_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        BirdControl(tmp_path / "x.ctl").command("show protocols\nconfigure")
