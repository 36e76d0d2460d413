"""One storage suite, run against botbuilder's MemoryStorage and our SqliteStorage."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import AsyncIterator

import pytest
from botbuilder.core import ConversationState, MemoryStorage, MessageFactory, StoreItem, TurnContext
from botbuilder.core.adapters import TestAdapter
from botbuilder.dialogs import (
    DialogSet,
    DialogState,
    DialogTurnStatus,
    PromptOptions,
    TextPrompt,
    WaterfallDialog,
    WaterfallStepContext,
)

from bot.storage import SqliteStorage


class Item(StoreItem):  # type: ignore[misc]
    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)


@pytest.fixture(params=["memory", "sqlite"])
async def storage(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[object]:
    if request.param == "memory":
        yield MemoryStorage()
    else:
        store = SqliteStorage(tmp_path / "bot.db")
        yield store
        await store.close()


async def test_read_missing_keys_and_round_trip(storage) -> None:  # type: ignore[no-untyped-def]
    assert await storage.read(["nope"]) == {}
    await storage.write({"a": {"count": 1}, "b": Item(name="x", e_tag="*")})
    got = await storage.read(["a", "b", "c"])
    assert set(got) == {"a", "b"} and got["a"]["count"] == 1 and got["b"].name == "x"


async def test_etag_conflict_star_and_empty(storage) -> None:  # type: ignore[no-untyped-def]
    await storage.write({"k": Item(v=1, e_tag="*")})
    first = (await storage.read(["k"]))["k"]
    old = first.e_tag
    first.v = 2
    await storage.write({"k": first})  # a conditional write with the etag just read succeeds
    current = (await storage.read(["k"]))["k"]
    assert current.v == 2
    if old not in (None, "*"):  # MemoryStorage only versions items that carried an etag
        with pytest.raises(KeyError):
            await storage.write({"k": Item(v=3, e_tag=old)})  # someone else's stale etag
        assert (await storage.read(["k"]))["k"].v == 2
    await storage.write({"k": Item(v=4, e_tag="*")})
    assert (await storage.read(["k"]))["k"].v == 4
    with pytest.raises((ValueError, Exception)) as info:  # MemoryStorage raises a bare Exception, SqliteStorage a ValueError
        await storage.write({"k": Item(v=5, e_tag="")})
    assert "etag" in str(info.value).lower() or "e_tag" in str(info.value).lower()


async def test_delete_and_empty_write(storage) -> None:  # type: ignore[no-untyped-def]
    await storage.write({"x": {"a": 1}, "y": {"b": 2}})
    await storage.delete(["x", "unknown"])
    await storage.write({})
    assert set(await storage.read(["x", "y"])) == {"y"}


async def test_dialog_state_round_trip_and_a_waterfall_across_turns(storage) -> None:  # type: ignore[no-untyped-def]
    conv_state = ConversationState(storage)
    accessor = conv_state.create_property("DialogState")
    dialogs = DialogSet(accessor)
    dialogs.add(TextPrompt("text"))

    async def ask(step: WaterfallStepContext):  # type: ignore[no-untyped-def]
        return await step.prompt("text", PromptOptions(prompt=MessageFactory.text("name?")))

    async def answer(step: WaterfallStepContext):  # type: ignore[no-untyped-def]
        await step.context.send_activity(f"hello {step.result}")
        return await step.end_dialog()

    dialogs.add(WaterfallDialog("w", [ask, answer]))

    async def logic(context: TurnContext) -> None:
        dc = await dialogs.create_context(context)
        result = await dc.continue_dialog()
        if result.status == DialogTurnStatus.Empty:
            await dc.begin_dialog("w")
        await conv_state.save_changes(context)

    adapter = TestAdapter(logic)
    step = await adapter.send("hi")
    step = await step.assert_reply("name?")
    step = await step.send("Riley")
    await step.assert_reply("hello Riley")
    assert isinstance(DialogState(), DialogState)


async def test_sqlite_is_durable_private_and_safe_under_concurrency(tmp_path: Path) -> None:
    path = tmp_path / "state" / "bot.db"
    first = SqliteStorage(path)
    await asyncio.gather(*(first.write({f"k{i}": {"n": i}}) for i in range(50)))
    await first.close()
    second = SqliteStorage(path)
    got = await second.read([f"k{i}" for i in range(50)])
    assert len(got) == 50 and got["k7"]["n"] == 7
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert await second.ping()
    await second.close()
