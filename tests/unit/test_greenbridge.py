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


def test_greenlets_are_reused_and_keep_nothing_of_a_call() -> None:
    """A finished call's greenlet serves the next one (after a failure too), each call in an
    empty context of its own, and an idle greenlet holds nothing of the call it ran."""
    import contextvars
    import gc
    import weakref

    import greenlet

    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")

    class Arg:
        pass

    def first(arg: Arg) -> tuple[object, str]:
        seen = var.get()
        var.set("set by the first call")
        greenbridge.wait(asyncio.sleep(0))
        return greenlet.getcurrent(), seen

    def fails() -> None:
        raise ValueError("fails")

    async def main() -> None:
        var.set("the caller's")
        arg = Arg()
        gone = weakref.ref(arg)
        g1, seen = await greenbridge.run(first, arg)
        assert seen == "unset"  # not the caller's context, as a new greenlet
        del arg
        gc.collect()
        assert gone() is None  # the idle greenlet keeps neither the call nor its arguments
        with pytest.raises(ValueError, match="fails"):
            await greenbridge.run(fails)
        g2, seen = await greenbridge.run(first, Arg())
        assert g2 is g1 and seen == "unset"  # the same greenlet, and none of the first call's context
        assert var.get() == "the caller's"

    asyncio.run(main())


def test_a_cancelled_caller_cancels_the_blocking_code() -> None:
    """The caller cancelled while the blocking code waits: CancelledError is raised in the
    blocking code at its `wait` (it may clean up), then in the caller; the greenlet serves on."""
    cleaned: list[str] = []

    def blocking(waiting: asyncio.Event, gate: asyncio.Event) -> None:
        waiting.set()
        try:
            greenbridge.wait(gate.wait())
        except asyncio.CancelledError:
            cleaned.append("cancelled at wait")
            raise

    async def main() -> str:
        waiting = asyncio.Event()
        task = asyncio.ensure_future(greenbridge.run(blocking, waiting, asyncio.Event()))
        await waiting.wait()  # set in the same step in which the blocking code then waits
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return await greenbridge.run(lambda: "after")

    assert asyncio.run(main()) == "after"
    assert cleaned == ["cancelled at wait"]
