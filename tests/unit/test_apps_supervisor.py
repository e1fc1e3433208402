"""The apps worker's actors, stopped together by a rebalance, are restarted without ending it."""

from __future__ import annotations

import mode
import pytest

from msgstate.workers.services.apps_worker import ActorSupervisor


class Actor(mode.Service):
    pass


class Replacements:
    """What the agent does for a supervisor: a new actor for each stopped one."""

    def __init__(self) -> None:
        self.made: list[int] = []

    async def __call__(self, service: mode.Service, index: int) -> mode.Service:
        self.made.append(index)
        return Actor()


async def restart_two(kind: type[mode.SupervisorStrategy], replace: Replacements) -> None:
    supervisor = kind(max_restarts=100.0, over=1.0, replacement=replace)
    stopped = [Actor(), Actor()]
    supervisor.add(*stopped)
    await supervisor.restart_services(stopped)


async def test_mode_s_default_exits_when_two_actors_restart_at_once() -> None:
    """Why the apps worker has a supervisor of its own: the default's limit holds one token."""
    replace = Replacements()
    with pytest.raises(SystemExit):
        await restart_two(mode.OneForOneSupervisor, replace)
    assert replace.made == [0]


async def test_the_apps_worker_s_supervisor_restarts_both() -> None:
    replace = Replacements()
    await restart_two(ActorSupervisor, replace)
    assert replace.made == [0, 1]
