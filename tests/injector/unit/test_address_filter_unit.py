"""The kernel's blocklist of a listening socket: the program, run by this machine's kernel.

A connect from a blocked address gets no answer (its SYN is dropped), any other connects at
once; IPv6 addresses are compared in all four of their words.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from injector.serving.address_filter import Blocklist, attach, program

NO_ANSWER = 0.3
"""Long enough for a loopback handshake; far shorter than the SYN's first retransmission."""


@pytest.fixture
def listener_v4() -> Iterator[socket.socket]:
    with socket.socket(socket.AF_INET) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        yield sock


@pytest.fixture
def listener_v6() -> Iterator[socket.socket]:
    with socket.socket(socket.AF_INET6) as sock:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, True)
        try:
            sock.bind(("::1", 0))
        except OSError as error:
            pytest.skip(f"no IPv6 loopback here: {error}")
        sock.listen(64)
        yield sock


def answers(listener: socket.socket, source: str) -> bool:
    """Whether a connect from `source` completes its handshake (the kernel's, not accept)."""
    family = listener.family
    with socket.socket(family) as client:
        client.bind((source, 0))
        client.settimeout(NO_ANSWER)
        try:
            client.connect(listener.getsockname()[:2])
        except TimeoutError:
            return False
        return True


def test_a_blocked_ipv4_address_gets_no_answer_and_the_others_do(
    listener_v4: socket.socket,
) -> None:
    attach(listener_v4, program(socket.AF_INET, ["127.0.0.5", "127.0.0.2", "127.0.0.9"]))
    seen = {source: answers(listener_v4, source) for source in ("127.0.0.1", "127.0.0.2")}
    seen["127.0.0.9"] = answers(listener_v4, "127.0.0.9")
    seen["127.0.0.3"] = answers(listener_v4, "127.0.0.3")
    attach(listener_v4, program(socket.AF_INET, []))
    seen["127.0.0.2 let in"] = answers(listener_v4, "127.0.0.2")

    assert seen == {
        "127.0.0.1": True,
        "127.0.0.2": False,
        "127.0.0.9": False,
        "127.0.0.3": True,
        "127.0.0.2 let in": True,
    }


def test_an_ipv6_address_is_compared_in_every_word(listener_v6: socket.socket) -> None:
    """::1 is the only source here: blocked by itself, and by no address that differs from it
    in any one of its four 32-bit words."""
    near = ["1::1", "0:0:1::1", "::1:0:0:1", "::2%lo"]
    attach(listener_v6, program(socket.AF_INET6, near))
    near_only = answers(listener_v6, "::1")
    attach(listener_v6, program(socket.AF_INET6, [*near, "::1%lo"]))  # a scope is not sent
    blocked = answers(listener_v6, "::1")

    assert near_only is True
    assert blocked is False


def test_an_address_of_the_other_family_is_refused() -> None:
    with pytest.raises(ValueError, match="not an address of family"):
        program(socket.AF_INET, ["::1"])
    with pytest.raises(ValueError, match="not an address of family"):
        program(socket.AF_INET6, ["127.0.0.1"])


def test_the_blocklist_lets_an_address_in_after_its_time_and_holds_no_more_than_its_limit() -> None:
    blocklist = Blocklist(socket.AF_INET, seconds=1.0, limit=2)

    assert blocklist.block("10.0.0.1", 100.0) is True
    assert blocklist.block("10.0.0.1", 100.5) is False, "blocked already: the filter stays"
    assert blocklist.block("10.0.0.2", 100.5) is True
    assert blocklist.block("10.0.0.3", 100.6) is False, "past the limit: reset at accept only"
    assert blocklist.next_expiry() == 101.0
    assert blocklist.expire(100.99) is False
    assert blocklist.expire(101.0) is True
    assert list(blocklist.until) == ["10.0.0.2"]
    assert blocklist.next_expiry() == 101.5
    assert blocklist.block("10.0.0.3", 101.2) is True
    assert blocklist.expire(102.2) is True
    assert blocklist.until == {} and blocklist.next_expiry() is None
    assert blocklist.program() == program(socket.AF_INET, [])


def test_a_connection_accepted_under_a_filter_keeps_a_copy_that_never_drops_its_own_peer(
    listener_v4: socket.socket,
) -> None:
    """Linux copies the listening socket's filter to the connection; its peer passed it."""
    attach(listener_v4, program(socket.AF_INET, ["127.0.0.2", "127.0.0.3"]))
    with socket.create_connection(listener_v4.getsockname(), NO_ANSWER) as client:
        accepted, _ = listener_v4.accept()
        with accepted:
            attach(listener_v4, program(socket.AF_INET, ["127.0.0.1"]))  # its peer, blocked now
            client.sendall(b"ping")
            accepted.settimeout(NO_ANSWER)
            got = accepted.recv(4)
            copied = len(accepted.getsockopt(socket.SOL_SOCKET, 26, 1024))  # SO_GET_FILTER

    assert got == b"ping"
    assert copied == len(program(socket.AF_INET, ["127.0.0.2", "127.0.0.3"]))
