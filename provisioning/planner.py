"""Preflight and plan: read the tenant, return a diff like `terraform plan`, with a stable hash."""

from __future__ import annotations

import asyncio
import hashlib
import json
from datetime import datetime, timezone
from typing import Any, Sequence

from .errors import (
    AuthenticationError,
    FieldError,
    MicrosoftApiError,
    PermissionDeniedError,
    PreflightFailed,
    ValidationFailed,
)
from .models import AgentSummary, Plan, PlannedStep, PreflightCheck, PreflightReport, SetupRequest, StepAction, StepName
from .steps import STEPS, StepContext
from .validation import validate_agent_name

MANAGE_APPS = frozenset({"Application.ReadWrite.OwnedBy", "Application.ReadWrite.All"})


def plan_hash(request: SetupRequest, agent: AgentSummary, steps: Sequence[PlannedStep]) -> str:
    canonical = json.dumps(
        {"request": request.to_dict(), "agent": agent.bot_id, "steps": [s.to_dict() for s in steps]},
        sort_keys=True, separators=(",", ":"), default=str,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


async def preflight_identity(roles: "asyncio.Future[frozenset[str]] | Any", whoami: Any) -> list[PreflightCheck]:
    checks: list[PreflightCheck] = []
    try:
        granted = await roles
    except MicrosoftApiError as exc:
        checks.append(PreflightCheck("graph_token", False, f"No Microsoft Graph token: {exc.user_message()}", exc.action))
    else:
        if granted & MANAGE_APPS:
            checks.append(PreflightCheck("graph_role", True, f"Microsoft Graph application permission {', '.join(sorted(granted & MANAGE_APPS))} is granted."))
        else:
            checks.append(PreflightCheck(
                "graph_role", False,
                "The provisioning identity has no Microsoft Graph permission to manage app registrations "
                f"(granted: {', '.join(sorted(granted)) or 'none'}).",
                "In Entra admin center → App registrations → the provisioning app → API permissions, add the Microsoft Graph "
                "application permission Application.ReadWrite.OwnedBy, then select 'Grant admin consent'.",
            ))
    try:
        await whoami
    except (PermissionDeniedError, AuthenticationError) as exc:
        checks.append(PreflightCheck("dataverse_access", False, f"No access to the agent's Dataverse environment: {exc.ms_message or exc.message}", exc.action))
    else:
        checks.append(PreflightCheck("dataverse_access", True, "The provisioning identity is an application user of the agent's environment."))
    return checks


def policy_check(policy: dict[str, Any] | None, days: int) -> tuple[PreflightCheck, FieldError | None]:
    if policy is None:
        return PreflightCheck("secret_lifetime_policy", True,
                              "The tenant's secret-lifetime policy could not be read (needs Policy.Read.All); Microsoft Graph enforces it when the secret is made."), None
    limits = [r for r in (policy.get("applicationRestrictions") or {}).get("passwordCredentials") or []
              if r.get("restrictionType") == "passwordLifetime" and r.get("state", "enabled") == "enabled"]
    if not limits or not policy.get("isEnabled", True):
        return PreflightCheck("secret_lifetime_policy", True, "The tenant sets no client-secret lifetime limit."), None
    max_days = min(_days(r.get("maxLifetime", "")) for r in limits)
    if days > max_days:
        return (PreflightCheck("secret_lifetime_policy", True, f"The tenant allows client secrets of at most {max_days} days."),
                FieldError("secret_lifetime_days", f"Your tenant allows client secrets of at most {max_days} days; choose {max_days} or fewer."))
    return PreflightCheck("secret_lifetime_policy", True, f"{days} days is within the tenant's limit of {max_days} days."), None


def _days(duration: str) -> int:
    import re

    m = re.fullmatch(r"P(\d+)D", duration or "")
    return int(m.group(1)) if m else 10**6


async def read_steps(ctx: StepContext) -> tuple[PlannedStep, ...]:
    """Read every applicable step in parallel, then decide in order (later decisions see earlier ones)."""
    active = [s for s in STEPS if s.applies(ctx.request)]
    currents = await asyncio.gather(*(s.read(ctx) for s in active))
    planned: list[PlannedStep] = []
    for step, current in zip(active, currents, strict=True):
        decision = step.decide(ctx, current)
        if step.name == StepName.CLIENT_SECRET and decision.action == StepAction.CREATE:
            ctx.data["needs_new_auth"] = True  # a new secret must be entered in Copilot Studio, then published
        if step.name == StepName.COPILOT_AUTHENTICATION and decision.action == StepAction.MANUAL:
            ctx.data["needs_new_auth"] = True
        planned.append(decision)
    return tuple(planned)


def make_plan(request: SetupRequest, agent: AgentSummary, steps: tuple[PlannedStep, ...], checks: list[PreflightCheck]) -> Plan:
    return Plan(request=request, agent=agent, steps=steps, preflight=PreflightReport(tuple(checks)),
                hash=plan_hash(request, agent, steps), created_at=datetime.now(timezone.utc))


def raise_if(field_errors: list[FieldError], checks: list[PreflightCheck]) -> None:
    report = PreflightReport(tuple(checks))
    if not report.ok:
        raise PreflightFailed(report)
    if field_errors:
        raise ValidationFailed(field_errors)


__all__ = ["plan_hash", "preflight_identity", "policy_check", "read_steps", "make_plan", "raise_if", "validate_agent_name"]
