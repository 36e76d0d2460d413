"""Preflight and plan: read the tenant, return a diff like `terraform plan`, with a stable hash.

The same steps' `read` + `decide` make the plan the approver sees and the decisions the job acts on. A plan for a
job that already ran (a retry) is made with the job's own data, so it says what applying would do now; `uncovered`
tells which of its changes the original approval did not cover.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from datetime import datetime, timezone
from typing import Any, Awaitable, Callable, Sequence

from .errors import (
    AuthenticationError,
    FieldError,
    MicrosoftApiError,
    PermissionDeniedError,
    PreflightFailed,
    ValidationFailed,
)
from .models import (
    CLIENT_SECRET,
    ROTATE,
    SETUP,
    AgentSummary,
    Change,
    Plan,
    PlannedStep,
    PreflightCheck,
    PreflightReport,
    SetupRequest,
    StepAction,
    StepName,
)
from .steps import StepContext, steps_for

OWNED_BY = "Application.ReadWrite.OwnedBy"
ALL = "Application.ReadWrite.All"
MANAGE_APPS = frozenset({OWNED_BY, ALL})


def plan_hash(request: SetupRequest, agent: AgentSummary, steps: Sequence[PlannedStep]) -> str:
    canonical = json.dumps(
        {"request": request.to_dict(), "agent": agent.bot_id, "steps": [s.to_dict() for s in steps]},
        sort_keys=True, separators=(",", ":"), default=str,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def graph_role_check(granted: frozenset[str]) -> PreflightCheck:
    if ALL in granted:
        return PreflightCheck(
            "graph_role", True,
            f"The provisioning identity has {ALL}, more than it needs: {OWNED_BY} lets it change only the app registrations "
            "it made. It still changes no app registration it did not make.",
            f"Consider replacing {ALL} with {OWNED_BY} (Entra admin center → App registrations → the provisioning app → API permissions).",
            advice=True)
    if OWNED_BY in granted:
        return PreflightCheck("graph_role", True, f"Microsoft Graph application permission {OWNED_BY} is granted (least privilege).")
    return PreflightCheck(
        "graph_role", False,
        "The provisioning identity has no Microsoft Graph permission to manage app registrations "
        f"(granted: {', '.join(sorted(granted)) or 'none'}).",
        "In Entra admin center → App registrations → the provisioning app → API permissions, add the Microsoft Graph "
        f"application permission {OWNED_BY}, then select 'Grant admin consent'.",
    )


async def preflight_identity(roles: "asyncio.Future[frozenset[str]] | Any", whoami: Any) -> list[PreflightCheck]:
    checks: list[PreflightCheck] = []
    try:
        granted = await roles
    except MicrosoftApiError as exc:
        checks.append(PreflightCheck("graph_token", False, f"No Microsoft Graph token: {exc.user_message()}", exc.action))
    else:
        checks.append(graph_role_check(granted))
    try:
        await whoami
    except (PermissionDeniedError, AuthenticationError) as exc:
        checks.append(PreflightCheck("dataverse_access", False, f"No access to the agent's Dataverse environment: {exc.ms_message or exc.message}", exc.action))
    else:
        checks.append(PreflightCheck("dataverse_access", True, "The provisioning identity is an application user of the agent's environment."))
    return checks


def _restrictions(policy: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [r for r in (policy.get("applicationRestrictions") or {}).get("passwordCredentials") or []
            if r.get("restrictionType") == kind and r.get("state", "enabled") == "enabled"]


def policy_check(policy: dict[str, Any] | None, request: SetupRequest) -> tuple[list[PreflightCheck], list[FieldError]]:
    """What the tenant's app-management policy allows: client secrets at all, and for how long."""
    if policy is None:
        return [PreflightCheck("app_management_policy", True,
                               "The tenant's app-management policy could not be read (needs Policy.Read.All); Microsoft Graph "
                               "enforces it when the credential is made.", advice=True)], []
    makes_secret = request.credential == CLIENT_SECRET and (request.purpose in (SETUP, ROTATE) or request.retire[:1] == ("password",))
    if not policy.get("isEnabled", True) or not makes_secret:
        return [PreflightCheck("app_management_policy", True, "The tenant's app-management policy allows this credential.")], []
    if _restrictions(policy, "passwordAddition"):
        return ([PreflightCheck("app_management_policy", True, "The tenant's app-management policy blocks client secrets.")],
                [FieldError("credential", "Your tenant's app-management policy does not allow client secrets on app registrations. "
                                          "Choose the federated credential (no secret at all).")])
    limits = _restrictions(policy, "passwordLifetime")
    if not limits:
        return [PreflightCheck("app_management_policy", True, "The tenant sets no client-secret lifetime limit.")], []
    max_days = min(_days(r.get("maxLifetime", "")) for r in limits)
    days = request.secret_lifetime_days
    if days > max_days:
        return ([PreflightCheck("app_management_policy", True, f"The tenant allows client secrets of at most {max_days} days.")],
                [FieldError("secret_lifetime_days", f"Your tenant allows client secrets of at most {max_days} days; choose {max_days} or fewer.")])
    return [PreflightCheck("app_management_policy", True, f"{days} days is within the tenant's limit of {max_days} days.")], []


def _days(duration: str) -> int:
    m = re.fullmatch(r"P(\d+)D", duration or "")
    return int(m.group(1)) if m else 10**6


async def read_steps(ctx: StepContext) -> tuple[PlannedStep, ...]:
    """Read every applicable step in parallel, then decide in order (later decisions see earlier ones). Steps that do
    not apply are listed as skipped, with why."""
    steps = steps_for(ctx.request)
    active = [s for s in steps if s.applies(ctx.request)]
    currents = dict(zip((s.name for s in active), await asyncio.gather(*(s.read(ctx) for s in active)), strict=True))
    planned: list[PlannedStep] = []
    for step in steps:
        if step.name not in currents:
            planned.append(PlannedStep(step.name, StepAction.NO_CHANGE, f"{step.name.label}: skipped",
                                       skip_reason=step.skip_reason(ctx.request, ctx.agent)))
            continue
        decision = step.decide(ctx, currents[step.name])
        new_credential = step.name in (StepName.CLIENT_SECRET, StepName.FEDERATED_CREDENTIAL) and decision.action == StepAction.CREATE
        if new_credential or (step.name == StepName.COPILOT_AUTHENTICATION and decision.action == StepAction.MANUAL):
            ctx.data["needs_new_auth"] = True  # a new credential must be entered in Copilot Studio, then published
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


def uncovered(approved: Plan, now: Plan) -> list[tuple[StepName, Change]]:
    """The changes `now` would make that the approval of `approved` did not show (a change with other before-values
    means someone changed the tenant meanwhile): a retry with any of these needs a new approval."""
    shown = {(s.step, c.field, json.dumps(c.before, sort_keys=True, default=str), json.dumps(c.after, sort_keys=True, default=str))
             for s in approved.steps for c in s.changes}
    out = []
    for step in now.steps:
        for change in step.changes:
            key = (step.step, change.field, json.dumps(change.before, sort_keys=True, default=str), json.dumps(change.after, sort_keys=True, default=str))
            if key not in shown:
                out.append((step.step, change))
    return out


async def gather_or_cancel(first: Awaitable[list[PreflightCheck]], rest: list["asyncio.Future[Any]"],
                           check: Callable[[list[PreflightCheck]], None]) -> list[PreflightCheck]:
    """Await the preflight, then the other reads; if the preflight fails, cancel them (their answers are moot)."""
    try:
        checks = await first
        check(checks)
    except BaseException:
        for task in rest:
            task.cancel()
        await asyncio.gather(*rest, return_exceptions=True)
        raise
    await asyncio.gather(*rest)
    return checks


__all__ = ["plan_hash", "preflight_identity", "policy_check", "read_steps", "make_plan", "raise_if", "uncovered", "gather_or_cancel"]
