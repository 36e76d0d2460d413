"""One storage suite, run against botbuilder's MemoryStorage and our BotStorage on SQLite and on PostgreSQL."""

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

from bot.storage import BotStorage
from store import Store, open_database

Item = StoreItem  # botbuilder's own class: the only kind of object (besides plain data) bot state may hold

@pytest.fixture(params=["memory", "sqlite", "postgresql"])
async def storage(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[object]:
    if request.param == "memory":
        yield MemoryStorage()
        return
    url = str(tmp_path / "bot.db") if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    db = open_database(url)
    await db.open()
    yield BotStorage(Store(db).kv)
    await db.close()


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
    db = open_database(str(path))
    await db.open()
    first = BotStorage(Store(db).kv)
    await asyncio.gather(*(first.write({f"k{i}": {"n": i}}) for i in range(50)))
    await db.close()
    again = open_database(str(path))
    await again.open()
    got = await BotStorage(Store(again).kv).read([f"k{i}" for i in range(50)])
    assert len(got) == 50 and got["k7"]["n"] == 7
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert await again.ping()
    await again.close()


async def test_a_poisoned_row_is_refused_and_never_run(database_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Edges #11: a row holding jsonpickle's py/reduce used to be decoded (it runs code in a process that holds the
    provisioning credentials). Now it is refused and logged, and reads as missing."""
    marker = tmp_path / "ran"
    reduce = {"py/reduce": [{"py/function": "pathlib.Path.touch"}, {"py/tuple": [{"py/object": "pathlib.PosixPath", "py/newargs": {"py/tuple": [str(marker)]}}]}]}
    db = open_database(database_url)
    await db.open()
    try:
        kv = Store(db).kv
        import json

        await kv.write({"old-row": (None, json.dumps(reduce)), "nested": (None, json.dumps({"$codec": 1, "v": {"x": {"$jp": json.dumps(reduce)}}})),
                        "foreign-class": (None, json.dumps({"$codec": 1, "v": {"$t": "os:system", "$v": {}}}))})
        storage = BotStorage(kv)
        assert await storage.read(["old-row", "nested", "foreign-class"]) == {}
        assert not marker.exists(), "nothing in a stored row may run"
        assert "refused the stored state" in caplog.text
        with pytest.raises(TypeError):  # and what the codec cannot write safely is refused when saved
            await storage.write({"k": {"when": object()}})
    finally:
        await db.close()
