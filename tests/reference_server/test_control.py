"""servers._control.SocketChannel speaks multiprocessing Connection's framing, both ways, over a real
socketpair (the exec'd worker's end against the supervisor's Connection)."""

import socket
import threading
from multiprocessing.connection import Connection

import pytest

from servers import _control
from servers._control import SocketChannel


@pytest.fixture
def pair():
    ours, theirs = socket.socketpair()
    conn = Connection(ours.detach())
    chan = SocketChannel(theirs)
    yield conn, chan
    conn.close()
    chan.close()


@pytest.mark.parametrize("size", [0, 1, 16384, 16385, 3 * 1024 * 1024 + 7])
def test_messages_cross_both_ways(pair, size):
    conn, chan = pair
    payload = bytes(i % 251 for i in range(size))
    # a big message fills the socket buffer: the other end must read while this one writes
    sender = threading.Thread(target=conn.send_bytes, args=(payload,))
    sender.start()
    assert chan.recv_bytes() == payload
    sender.join(30)
    sender = threading.Thread(target=chan.send_bytes, args=(payload,))
    sender.start()
    assert conn.recv_bytes() == payload
    sender.join(30)
    assert not sender.is_alive()


def test_json_messages_and_recv_type(pair):
    conn, chan = pair
    _control.send(chan, _control.READY, pid=42)
    assert _control.recv(conn) == {"type": "ready", "pid": 42}
    _control.send(conn, "noise")
    _control.send(conn, _control.SHARE, data="ab")
    assert _control.recv_type(chan, _control.SHARE, 5.0) == {"type": "share", "data": "ab"}


def test_poll_waits_for_data_without_consuming(pair):
    conn, chan = pair
    assert chan.poll(0.0) is False
    assert chan.poll(0.05) is False
    conn.send_bytes(b"x")
    assert chan.poll(5.0) is True
    assert chan.poll(0.0) is True  # still there
    assert chan.recv_bytes() == b"x"


def test_recv_type_times_out(pair):
    _conn, chan = pair
    with pytest.raises(TimeoutError, match="no 'share' message"):
        _control.recv_type(chan, _control.SHARE, 0.05)


def test_eof_between_messages_and_inside_one():
    ours, theirs = socket.socketpair()
    chan = SocketChannel(theirs)
    ours.close()
    with pytest.raises(EOFError, match="closed"):
        chan.recv_bytes()
    chan.close()

    ours, theirs = socket.socketpair()
    chan = SocketChannel(theirs)
    ours.sendall(b"\x00\x00\x00\x10abc")  # says 16 bytes, sends 3, then closes
    ours.close()
    with pytest.raises(EOFError, match="middle"):
        chan.recv_bytes()
    chan.close()
