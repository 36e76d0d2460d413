"""The fast paths that replace msrest and jsonpickle give what those libraries give."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from botbuilder.core import MessageFactory, TurnContext
from botbuilder.dialogs import DialogInstance, DialogState, PromptOptions
from botbuilder.schema import (
    Activity,
    ActivityTypes,
    Attachment,
    CardAction,
    ChannelAccount,
    ConversationAccount,
    Entity,
    Mention,
    SuggestedActions,
)
from hypothesis import given, settings
from hypothesis import strategies as st

import cards
from bot import state_codec
from bot.wire import from_wire, to_wire

INBOUND = {
    "type": "message", "id": "1", "timestamp": "2026-11-24T12:00:00.123Z", "channelId": "msteams", "serviceUrl": "http://127.0.0.1:1/",
    "from": {"id": "29:u", "name": "Riley", "aadObjectId": "00000000-0000-0000-0000-000000000001"},
    "conversation": {"id": "19:c@thread.tacv2;messageid=1", "conversationType": "channel", "tenantId": "t"},
    "recipient": {"id": "28:bot", "name": "Bot"}, "text": "<at>Bot</at> setup copilot", "locale": "en-US",
    "entities": [{"type": "mention", "mentioned": {"id": "28:bot", "name": "Bot"}, "text": "<at>Bot</at>"},
                 {"type": "clientInfo", "locale": "en-US", "country": "US"}],
    "channelData": {"tenant": {"id": "t"}, "team": {"id": "19:team"}},
}


def _msrest(activity: Activity) -> Any:
    return activity.serialize()


def _same(a: Any, b: Any) -> None:
    """Equal JSON, with timestamps compared as instants (msrest writes microseconds, we write ISO 8601)."""
    def norm(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: norm(x) for k, x in v.items()}
        if isinstance(v, list):
            return [norm(x) for x in v]
        if isinstance(v, str) and len(v) > 18 and v[4] == "-" and v[10] == "T":
            try:
                return datetime.fromisoformat(v.replace("Z", "+00:00"))
            except ValueError:
                return v
        return v
    assert norm(a) == norm(b)


def test_replies_the_bot_sends_serialize_as_msrest_does() -> None:
    inbound = Activity().deserialize(INBOUND)
    reference = TurnContext.get_conversation_reference(inbound)
    replies = [
        MessageFactory.attachment(cards.as_attachment(cards.notice_card("Cancelled", "Nothing was changed."))),
        MessageFactory.text("Something went wrong on my side"),
        Activity(type=ActivityTypes.message, text="<at>Riley</at>, done", timestamp=datetime(2026, 11, 24, 12, 0, tzinfo=timezone.utc),
                 entities=[Mention(mentioned=ChannelAccount(id="29:u", name="Riley"), text="<at>Riley</at>", type="mention")],
                 suggested_actions=SuggestedActions(actions=[CardAction(type="imBack", title="Status", value="status")]),
                 attachments=[Attachment(content_type="application/vnd.microsoft.card.adaptive", content={"type": "AdaptiveCard", "body": []})]),
        inbound,  # what the bot received, entities with extra properties included
    ]
    for reply in replies:
        activity = TurnContext.apply_conversation_reference(reply, reference)
        _same(to_wire(activity), _msrest(activity))
        json.dumps(to_wire(activity))


@settings(max_examples=60, deadline=None)
@given(text=st.text(max_size=40), name=st.one_of(st.none(), st.text(max_size=10)),
       extra=st.dictionaries(st.text(min_size=1, max_size=8), st.one_of(st.integers(), st.text(max_size=8), st.booleans()), max_size=3))
def test_any_message_serializes_as_msrest_does(text: str, name: str | None, extra: dict[str, Any]) -> None:
    activity = Activity(type="message", text=text, from_property=ChannelAccount(id="28:b", name=name),
                        conversation=ConversationAccount(id="a:1", is_group=False), channel_data=extra,
                        entities=[Entity(type="clientInfo")])
    _same(to_wire(activity), _msrest(activity))


def _dialog_state() -> dict[str, Any]:
    prompt = PromptOptions(validations={"card": "c1", "verbs": ["form.submit"], "who": "requester", "requester": "oid"})
    stack = [DialogInstance("card-prompt", {"options": prompt, "state": {}}),
             DialogInstance("setup-waterfall", {"options": {}, "values": {"agents": [{"name": "Contoso", "bot_id": "b"}], "$odd": 1},
                                                 "stepIndex": 0, "when": datetime(2026, 11, 24, tzinfo=timezone.utc), "pair": (1, "x")})]
    return {"DialogState": DialogState(stack), "e_tag": "*"}


def test_dialog_state_round_trips_and_its_fingerprint_tracks_changes() -> None:
    state = _dialog_state()
    back = state_codec.loads(state_codec.dumps(state))
    assert isinstance(back["DialogState"], DialogState)
    first, second = back["DialogState"].dialog_stack
    assert isinstance(first, DialogInstance) and isinstance(first.state["options"], PromptOptions)
    assert first.state["options"].validations["verbs"] == ["form.submit"]
    assert second.state["values"] == {"agents": [{"name": "Contoso", "bot_id": "b"}], "$odd": 1}
    assert second.state["when"] == datetime(2026, 11, 24, tzinfo=timezone.utc) and second.state["pair"] == (1, "x")
    assert state_codec.fingerprint(back) == state_codec.fingerprint(state)
    second.state["stepIndex"] = 1
    assert state_codec.fingerprint(back) != state_codec.fingerprint(state)


def test_a_stored_row_cannot_name_a_class_outside_botbuilder() -> None:
    import pytest

    evil = json.dumps({"$codec": 1, "v": {"$t": "subprocess:Popen", "$v": {}}})
    with pytest.raises(ValueError, match="outside botbuilder"):
        state_codec.loads(evil)


def _read_both(body: Any) -> tuple[Any, Any]:
    """(msrest's reading, from_wire's): each an Activity, or the kind of error it raised."""
    from msrest.exceptions import DeserializationError

    out = []
    for read in (lambda b: Activity().deserialize(b), lambda b: from_wire(Activity, b)):
        try:
            out.append(read(body))
        except DeserializationError:
            out.append(DeserializationError)
    return out[0], out[1]


def test_inbound_activities_read_as_msrest_reads_them() -> None:
    teams_invoke = {"type": "invoke", "name": "adaptiveCard/action", "id": "f:1", "channelId": "msteams", "serviceUrl": "http://127.0.0.1:1/",
                    "from": {"id": "29:u", "aadObjectId": "o"}, "conversation": {"id": "a:1", "conversationType": "personal", "tenantId": "t"},
                    "recipient": {"id": "28:bot"}, "value": {"action": {"type": "Action.Execute", "verb": "v", "data": {"card": "c", "n": 1.5, "ok": True}}},
                    "localTimestamp": "2026-11-24T13:00:00.1234567+01:00", "replyToId": "1", "attachments": [{"contentType": "x", "content": {"a": [1, None]}}]}
    for body in (INBOUND, teams_invoke, {**INBOUND, "membersAdded": [{"id": "28:bot", "name": "Bot", "extra": 1}]}):
        ours, theirs = from_wire(Activity, body), Activity().deserialize(body)
        assert ours == theirs and to_wire(ours) == to_wire(theirs)
    mention = from_wire(Activity, INBOUND).entities[0]
    assert isinstance(mention, Entity) and mention.additional_properties["mentioned"] == {"id": "28:bot", "name": "Bot"}
    assert from_wire(Activity, teams_invoke).local_timestamp == Activity().deserialize(teams_invoke).local_timestamp


_JSON = st.recursive(st.none() | st.booleans() | st.integers(-5, 5) | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8),
                     lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(["id", "name", "type", "x"]), inner, max_size=3),
                     max_leaves=8)
_FIELDS = ["type", "id", "timestamp", "localTimestamp", "from", "conversation", "recipient", "text", "entities", "attachments",
           "value", "channelData", "membersAdded", "replyToId", "suggestedActions", "importance", "expiration", "textHighlights", "unknownKey"]


@settings(max_examples=300, deadline=None)
@given(changes=st.dictionaries(st.sampled_from(_FIELDS), _JSON | st.sampled_from(["2026-11-24T12:00:00Z", "2026-13-01T00:00:00Z", "garbage"]),
                               max_size=5))
def test_any_inbound_body_reads_as_msrest_reads_it_or_is_refused_as_msrest_refuses_it(changes: dict[str, Any]) -> None:
    body = {**INBOUND, **changes}
    theirs, ours = _read_both(body)
    assert ours == theirs, (body, ours, theirs)
