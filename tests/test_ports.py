"""Loopback ports for the processes the tests and the stack start."""

from __future__ import annotations

import socket

import pytest

from otel_correlate import _procs


class _Socket:
    """A socket whose binds get the ports of ``ports`` in turn, as the kernel may give one port twice."""

    def __init__(self, ports: list[int]) -> None:
        self._ports = ports
        self._port = 0

    def __call__(self) -> _Socket:
        return self

    def __enter__(self) -> _Socket:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def bind(self, address: tuple[str, int]) -> None:
        assert address == ("127.0.0.1", 0)
        self._port = self._ports.pop(0)

    def getsockname(self) -> tuple[str, int]:
        return ("127.0.0.1", self._port)


def test_a_port_the_kernel_gives_twice_is_handed_out_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_procs, "_HANDED_OUT", set())
    monkeypatch.setattr(_procs.socket, "socket", _Socket([40457, 40457, 40457, 40458]))
    assert [_procs.free_port(), _procs.free_port()] == [40457, 40458]


def test_no_fresh_port_left_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_procs, "_HANDED_OUT", {40457})
    monkeypatch.setattr(_procs.socket, "socket", _Socket([40457] * 100))
    with pytest.raises(RuntimeError, match="no loopback port free"):
        _procs.free_port()


def test_real_ports_are_distinct_and_bindable() -> None:
    ports = [_procs.free_port() for _ in range(50)]
    assert len(set(ports)) == 50
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", ports[-1]))
