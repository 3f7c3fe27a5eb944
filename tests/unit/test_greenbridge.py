"""`netplane.store.greenbridge`: blocking code run on the loop, its waits awaited there."""

from __future__ import annotations

import asyncio
import threading

import pytest

from netplane.store import greenbridge


def test_waits_are_awaited_on_the_loop_and_interleave() -> None:
    order: list[str] = []

    def blocking(name: str, gate: asyncio.Event, other: asyncio.Event) -> str:
        assert greenbridge.inside()
        order.append(f"{name} start")
        other.set()
        greenbridge.wait(gate.wait())  # the loop runs the other one meanwhile
        order.append(f"{name} end")
        return name + " done"

    async def main() -> list[str]:
        a, b = asyncio.Event(), asyncio.Event()
        ident = threading.get_ident()

        def where() -> int:
            return threading.get_ident()

        assert await greenbridge.run(where) == ident  # no thread
        return list(await asyncio.gather(greenbridge.run(blocking, "a", a, b),
                                         greenbridge.run(blocking, "b", b, a)))

    assert asyncio.run(main()) == ["a done", "b done"]
    assert order[:2] == ["a start", "b start"] and sorted(order[2:]) == ["a end", "b end"]


def test_errors_reach_the_blocking_code_and_the_caller() -> None:
    async def fails() -> None:
        await asyncio.sleep(0)
        raise KeyError("from the loop")

    def handles() -> str:
        try:
            greenbridge.wait(fails())
        except KeyError as e:
            return f"caught {e}"
        return "not raised"

    def raises() -> None:
        greenbridge.wait(asyncio.sleep(0))
        raise ValueError("from the blocking code")

    async def main() -> str:
        with pytest.raises(ValueError, match="from the blocking code"):
            await greenbridge.run(raises)
        with pytest.raises(KeyError):
            await greenbridge.run(lambda: greenbridge.wait(fails()))
        return await greenbridge.run(handles)

    assert asyncio.run(main()) == "caught 'from the loop'"


def test_wait_outside_run_is_refused() -> None:
    assert not greenbridge.inside()
    coro = asyncio.sleep(0)
    with pytest.raises(RuntimeError, match="outside greenbridge.run"):
        greenbridge.wait(coro)
    coro.close()
