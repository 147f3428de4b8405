"""Loopback ports for the processes the tests and the stack start."""

from __future__ import annotations

import itertools
import os
import socket
from collections.abc import Iterator

import pytest

from otel_correlate import _procs


@pytest.fixture
def pool(monkeypatch: pytest.MonkeyPatch) -> Iterator[set[int]]:
    """A pool of five ports whose busy ones are in the yielded set; the cursor starts at its first port."""
    busy: set[int] = set()
    monkeypatch.setattr(_procs, "_HANDED_OUT", set())
    monkeypatch.setattr(_procs, "_CURSOR", {"pid": os.getpid(), "next": 0})
    monkeypatch.setattr(_procs, "_POOL_SIZE", 5)
    monkeypatch.setattr(_procs, "_pool", lambda: range(40000, 40005))
    monkeypatch.setattr(_procs, "port_taken", lambda port: port in busy)
    yield busy


def test_ports_are_handed_out_once_skipping_busy_ones(pool: set[int]) -> None:
    pool.add(40001)
    assert [_procs.free_port() for _ in range(4)] == [40000, 40002, 40003, 40004]
    with pytest.raises(RuntimeError, match=r"no port of 127.0.0.1:40000-40004 is free and not handed out"):
        _procs.free_port()


def test_the_pool_wraps_around_to_ports_freed_since(pool: set[int]) -> None:
    pool.update({40000, 40001})
    assert [_procs.free_port() for _ in range(3)] == [40002, 40003, 40004]
    pool.clear()
    assert _procs.free_port() == 40000


def test_a_forked_process_starts_at_its_own_place(monkeypatch: pytest.MonkeyPatch, pool: set[int]) -> None:
    monkeypatch.setattr(_procs, "_CURSOR", {"pid": -1, "next": 0})
    assert _procs.free_port() == 40000 + _procs._start_offset(os.getpid(), 5)


def test_processes_of_nearby_pids_start_far_apart() -> None:
    starts = [_procs._start_offset(pid, 4000) for pid in range(1000, 1020)]
    gaps = [abs(a - b) for a, b in itertools.pairwise(starts)]
    assert min(min(gap, 4000 - gap) for gap in gaps) > 200, starts  # a process hands out a few dozen


def test_a_child_forked_while_the_lock_is_held_can_still_hand_out_ports() -> None:
    from tests.forks import exit_code_of

    with _procs._LOCK:
        pid = os.fork()
        if pid == 0:
            try:
                _procs.free_port()
            finally:
                os._exit(0)
    assert exit_code_of(pid, timeout=20) == 0


def test_real_ports_lie_below_the_ephemeral_range_and_are_bindable() -> None:
    with open("/proc/sys/net/ipv4/ip_local_port_range") as ports:
        low = int(ports.read().split()[0])
    if len(_procs._pool()) < _procs._POOL_SIZE // 4:
        pytest.skip(f"ip_local_port_range starts at {low}: no pool below it here")
    handed = [_procs.free_port() for _ in range(50)]
    assert len(set(handed)) == 50
    assert all(low - _procs._POOL_SIZE <= port < low for port in handed), handed
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", handed[-1]))


def test_without_room_below_the_ephemeral_range_the_kernel_picks_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_procs, "_HANDED_OUT", set())
    monkeypatch.setattr(_procs, "_pool", lambda: range(1024, 1030))  # ip_local_port_range from 1030
    answers = [5000, 5000, 5000, 5001]  # the kernel may give one port to binds in a row
    monkeypatch.setattr(_procs, "_probe_port", lambda: answers.pop(0))
    assert [_procs.free_port(), _procs.free_port()] == [5000, 5001]
    monkeypatch.setattr(_procs, "_probe_port", lambda: 5000)
    with pytest.raises(RuntimeError, match="the kernel gave only ports handed out already"):
        _procs.free_port()
