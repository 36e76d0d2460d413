"""The setup waterfall driven by botbuilder's TestAdapter (no HTTP), with the real provisioning service and sandbox."""

from __future__ import annotations

from pathlib import Path
from typing import Any, AsyncIterator

import pytest
from botbuilder.core import MemoryStorage
from botbuilder.core.adapters import TestAdapter
from botbuilder.schema import Activity, ChannelAccount, ConversationAccount

from bot.authz import AccessPolicy
from bot.bot import SetupBot
from bot.config import BotSettings
from bot.conversations import ConversationStore
from bot.job_actions import JobActions
from bot.state import SetupConversationState, SetupUserState
from dialogs.setup_dialog import SetupDialog, default_values, request_from
from provisioning import ProvisioningService
from provisioning.models import AgentSummary
from sandbox import Sandbox
from tests.fixtures.provisioning import make_service

RILEY = ChannelAccount(id="29:riley", name="Riley Requester", aad_object_id="11111111-aaaa-4aaa-8aaa-111111111111")


def template(kind: str = "personal") -> Activity:
    return Activity(channel_id="msteams", service_url="http://127.0.0.1:1/",
                    conversation=ConversationAccount(id=f"a:{kind}-conv", conversation_type=kind, is_group=kind != "personal"),
                    from_property=RILEY, recipient=ChannelAccount(id="28:bot", name="Copilot Setup"),
                    channel_data={"tenant": {"id": "72f988bf-86f1-41af-91ab-2d7cd011db47"}})


@pytest.fixture
async def svc(sandbox: Sandbox, tmp_path: Path) -> AsyncIterator[ProvisioningService]:
    service = make_service(sandbox, tmp_path / "svc", run_worker=False)
    await service.start()
    yield service
    await service.close()


def make_adapter(service: ProvisioningService, **env: str) -> TestAdapter:
    storage = MemoryStorage()
    settings = BotSettings.from_env({"HOST": "127.0.0.1", **env}, dotenv=None)
    policy = AccessPolicy(settings)
    actions = JobActions(service=service, conversations=ConversationStore(storage), policy=policy, bot_settings=settings)
    bot = SetupBot(conversation_state=SetupConversationState(storage), user_state=SetupUserState(storage), service=service, policy=policy,
                   job_actions=actions, dialog=SetupDialog(service=service, policy=policy, job_actions=actions))
    return TestAdapter(bot.on_turn, template())


def card(activity: Activity) -> dict[str, Any]:
    assert activity.attachments, activity
    content: dict[str, Any] = activity.attachments[0].content
    return content


def submit_value(content: dict[str, Any], title: str, **inputs: Any) -> dict[str, Any]:
    action = next(a for a in content["actions"] if a["title"] == title)
    return {**inputs, **action["data"]}


async def test_waterfall_from_command_to_plan_card(svc: ProvisioningService) -> None:
    adapter = make_adapter(svc)
    await adapter.receive_activity("/setup copilot")
    choose = card(adapter.get_next_activity())
    assert choose["body"][0]["text"] == "Set up an agent: 1 of 2"
    choices = next(e for e in choose["body"] if e.get("id") == "agent")["choices"]
    support = next(c["value"] for c in choices if c["title"].startswith("Contoso Support"))
    await adapter.receive_activity(Activity(type="message", value=submit_value(choose, "Next", agent=support)))
    details = card(adapter.get_next_activity())
    assert next(e for e in details["body"] if e.get("id") == "app_display_name")["value"] == "Contoso Support - Copilot auth"
    await adapter.receive_activity(Activity(type="message", value=submit_value(details, "Review plan", **{
        e["id"]: e.get("value", "") for e in details["body"] if e.get("id")})))
    plan = card(adapter.get_next_activity())
    assert plan["body"][0]["text"] == "Plan for 'Contoso Support'"
    assert [a["title"] for a in plan["actions"]] == ["Approve", "Cancel"]
    await adapter.receive_activity(Activity(type="message", value=submit_value(plan, "Cancel")))
    cancelled = adapter.updated_activities[-1] if adapter.updated_activities else adapter.get_next_activity()
    assert "Cancelled" in str(card(cancelled))
    assert await svc.list_jobs() == []


async def test_typed_text_and_stale_cards_get_a_notice(svc: ProvisioningService) -> None:
    adapter = make_adapter(svc)
    await adapter.receive_activity("setup copilot")
    choose = card(adapter.get_next_activity())
    await adapter.receive_activity("Contoso Support please")
    assert "Use the card" in str(card(adapter.get_next_activity()))
    stale = dict(submit_value(choose, "Next", agent="x"), card="old-card")
    await adapter.receive_activity(Activity(type="message", value=stale))
    assert "out of date" in str(card(adapter.get_next_activity()))
    await adapter.receive_activity(Activity(type="message", value=submit_value(choose, "Next", agent="https://forged|00000000")))
    again = card(adapter.get_next_activity())
    assert "Choose one of the agents in the list." in str(again)


def test_form_values_become_a_request_or_field_messages() -> None:
    agent = AgentSummary("https://contoso.crm.dynamics.com", "b1", "Contoso Support", "cr6a1_contosoSupport")
    values = default_values(agent) | {"redirect_uris": "https://a.example.com/cb\n\n https://b.example.com/cb ", "secret_lifetime_days": "90"}
    request, errors = request_from(agent, values)
    assert errors == {} and request is not None
    assert request.redirect_uris == ("https://a.example.com/cb", "https://b.example.com/cb") and request.secret_lifetime_days == 90
    _, bad = request_from(agent, values | {"secret_lifetime_days": "forever", "require_secured_access": "maybe"})
    assert set(bad) == {"secret_lifetime_days", "require_secured_access"}
