"""Ports for local processes: free when picked, never from the kernel's ephemeral range, never handed out twice."""

from __future__ import annotations

import random
import socket

import pytest
from ai_agents.config import CommonSettings
from ai_agents.local.ports import PortPicker, ephemeral_range, loopback_port_env, server_ports


class _Scripted(random.Random):
    """randint answers from a script: the picker's choices, made deterministic."""

    def __init__(self, script: list[int]) -> None:
        super().__init__(0)
        self._script = list(script)
        self.asked: list[tuple[int, int]] = []

    def randint(self, a: int, b: int) -> int:
        self.asked.append((a, b))
        return self._script.pop(0)


def test_picks_stay_below_the_ephemeral_range_and_never_repeat() -> None:
    low, _ = ephemeral_range()
    picker = PortPicker()
    picks = [picker.pick() for _ in range(300)]
    assert len(set(picks)) == len(picks)
    assert all(20000 <= p < low for p in picks), f"outside [20000, {low}): {[p for p in picks if p >= low][:5]}"


def test_a_port_in_use_or_already_given_is_skipped() -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        busy = held.getsockname()[1]
        picker = PortPicker(rng=_Scripted([busy, 23456, 23456, 23457]), ephemeral=(32768, 60999))
        assert picker.pick() == 23456, "the bound port is skipped"
        assert picker.pick() == 23457, "the port already handed out is skipped"


@pytest.mark.parametrize(
    ("ephemeral", "expected"),
    [
        ((32768, 60999), (20000, 32767)),  # Linux's default: below it
        ((10000, 40000), (40001, 65535)),  # starts low: above it
        ((15000, 65000), (20000, 65535)),  # no room on either side: the bind check and no-repeat rule only
    ],
)
def test_the_pick_range_avoids_the_ephemeral_range_where_there_is_room(
    ephemeral: tuple[int, int], expected: tuple[int, int]
) -> None:
    rng = _Scripted([expected[0] + 1234])
    PortPicker(rng=rng, ephemeral=ephemeral).pick()
    assert rng.asked == [expected]


def test_a_process_environment_serves_its_four_ports_on_loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    ports = server_ports()
    assert len(set(ports.values())) == 4
    # Read back through the settings every process reads: the names the environment sets are the ones it parses.
    for name, value in loopback_port_env(ports).items():
        monkeypatch.setenv(name, value)
    settings = CommonSettings()
    assert settings.host == "127.0.0.1"
    assert {name: getattr(settings, f"{name}_port") for name in ports} == ports
