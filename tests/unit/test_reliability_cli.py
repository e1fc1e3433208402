"""`msgstate reliability` refuses the soak's options without the soak, in one line."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from msgstate.workers.cli.reliability import reliability


@pytest.mark.parametrize("option", [["--runs", "3"], ["--cluster"]])
def test_the_soak_options_need_the_soak(option: list[str]) -> None:
    done = CliRunner().invoke(reliability, ["sigkill", *option])
    assert done.exit_code == 2
    assert f"{option[0]} is an option of the soak scenario, which is not chosen" in done.output
