"""Run only by test_the_suite.py: a test that swallows pytest-timeout's exception forever,
as a hang inside an event loop's own shutdown does. Not collected by default (no test_ prefix)."""

import time


def test_that_swallows_its_timeout() -> None:
    while True:
        try:
            time.sleep(10)
        except BaseException:
            pass
