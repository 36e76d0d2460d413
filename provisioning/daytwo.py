"""Day two from chat and the command line: the setups and their health, and the changes the watch's findings lead
to — rotate the client secret, switch to a federated credential, put drift back, keep a change, remove the setup.

Every change but "keep" is an ordinary job: a request derived from what was approved, planned against the tenant,
shown, approved (as a setup is) and applied by the existing steps, so it resumes after a crash like any setup."""

from __future__ import annotations

import dataclasses
from typing import Any

from .approvals import Approvals
from .core import Core
from .errors import JobStateError
from .journal import audit
from .models import CLIENT_SECRET, FEDERATED, REMOVE, REPAIR, ROTATE, Actor, JobStatus, Plan, SetupRequest, StepName
from .setups import CHANGES, CHANGING, PUT_BACK, REMOVE_SETUP, ROTATE_SECRET, SWITCH_TO_FEDERATED, SetupView
from .watch import Watch, drift_key

OPEN = (*CHANGING, JobStatus.FAILED.value)  # a failed change is still open: retry or cancel it first
# what "Keep the change" writes into the approved request, per app registration field
KEEPABLE = {"signInAudience": "sign_in_audience", "web.redirectUris": "redirect_uris", "displayName": "app_display_name",
            "web.implicitGrantSettings.enableAccessTokenIssuance": "implicit_grant_access_tokens",
            "web.implicitGrantSettings.enableIdTokenIssuance": "implicit_grant_id_tokens"}


class DayTwo:
    def __init__(self, core: Core, approvals: Approvals, watch: Watch) -> None:
        self.core = core
        self.approvals = approvals
        self.watch = watch

    async def setups(self, conversation: str | None = None) -> list[SetupView]:
        """The setups (of one conversation, or all), newest first. Completed jobs are recorded first."""
        await self.watch.reconcile()
        rows = await self.core.store.setups.all()
        views = []
        for row in rows:
            exp = row["expected"]
            if conversation is not None and exp.get("conversation") != conversation:
                continue
            open_ids = await self.core.store.jobs.ids(statuses=OPEN, subject=row["subject"])
            open_purpose = ""
            if open_ids:
                snap = await self.core.store.jobs.get(open_ids[-1])
                open_purpose = str(((snap.job["plan"] or {}).get("request") or {}).get("purpose", "")) if snap else ""
            agent = exp.get("agent") or {}
            views.append(SetupView(
                subject=row["subject"], job_id=row["job_id"], status=row["status"], agent_name=str(agent.get("name", "")),
                environment_name=str(agent.get("environment_name") or agent.get("environment_url", "")), credential=str(exp.get("credential", "")),
                client_id=str(exp.get("client_id", "")), secret_expires=str((exp.get("secret") or {}).get("end", "")),
                conversation=str(exp.get("conversation", "")), last_check_at=row["last_check_at"], last_result=row["last_result"],
                findings=tuple(row["findings"]), open_job=open_ids[-1] if open_ids else "", open_job_purpose=open_purpose))
        return sorted(views, key=lambda v: v.agent_name.lower())

    async def setup(self, subject: str) -> SetupView:
        for view in await self.setups():
            if view.subject == subject:
                return view
        raise JobStateError("There is no setup for that agent.", action="Type status to see the setups.")

    async def find(self, text: str) -> SetupView:
        """A setup by its subject, its last job id (or its first 8 characters), or its agent's name (the command line)."""
        wanted = text.strip().lower()
        views = await self.setups()
        found = [v for v in views if wanted in (v.subject.lower(), v.job_id, v.job_id[:8], v.agent_name.lower(), v.client_id)]
        if len(found) != 1:
            names = ", ".join(f"'{v.agent_name}' ({v.job_id[:8]})" for v in views) or "none yet"
            raise JobStateError(f"{'No' if not found else 'More than one'} setup matches '{text}'.", action=f"Name one of: {names}.")
        return found[0]

    async def propose(self, subject: str, change: str) -> Plan:
        """The plan for a day-two change, to show for approval; nothing is changed yet."""
        view = await self.setup(subject)
        if view.status != "active":
            raise JobStateError(f"The setup of '{view.agent_name}' was removed.", action="Type /setup copilot to set it up again.")
        if view.open_job:
            raise JobStateError(f"A change to the setup of '{view.agent_name}' has not finished yet (job {view.open_job[:8]}).",
                                action="Finish or cancel it from its progress card first.")
        row = await self.core.store.setups.get(subject)
        assert row is not None
        exp = row["expected"]
        base = SetupRequest.from_dict(exp["request"])
        key_id = str((exp.get("secret") or {}).get("key_id") or "")
        if change == ROTATE_SECRET:
            if exp.get("credential") != CLIENT_SECRET:
                raise JobStateError(f"'{view.agent_name}' signs in with a federated credential: there is no secret to rotate.")
            request = dataclasses.replace(base, purpose=ROTATE, credential=CLIENT_SECRET, retire=("password", key_id, "the old client secret"))
        elif change == SWITCH_TO_FEDERATED:
            if exp.get("credential") != CLIENT_SECRET:
                raise JobStateError(f"'{view.agent_name}' already signs in with a federated credential.")
            request = dataclasses.replace(base, purpose=ROTATE, credential=FEDERATED, retire=("password", key_id, "the client secret"))
        elif change == PUT_BACK:
            if not row["findings"]:
                raise JobStateError(f"The setup of '{view.agent_name}' is as approved: there is nothing to put back.",
                                    action="Select Check now to look again.")
            renew = exp.get("credential") == CLIENT_SECRET and any(
                f["step"] in (StepName.CLIENT_SECRET.value, StepName.COPILOT_AUTHENTICATION.value) for f in row["findings"])
            # a client secret nobody holds any more cannot be entered in Copilot Studio again: a new one replaces it
            request = dataclasses.replace(base, purpose=REPAIR, retire=("password", key_id, "the old client secret") if renew else ())
        elif change == REMOVE_SETUP:
            request = dataclasses.replace(base, purpose=REMOVE)
        else:
            raise JobStateError(f"'{change}' is not a change I know.", action=f"Use one of: {', '.join(CHANGES)}.")
        plan, _ctx = await self.approvals.plan(request)
        return plan

    async def keep_change(self, subject: str, actor: Actor) -> SetupView:
        """Record the tenant as it is now as approved (audited): the watch stops reporting these changes, and a later
        repair or rotation keeps them."""
        row = await self.core.store.setups.get(subject)
        if row is None or not row["findings"]:
            raise JobStateError("There is no change to keep for that setup.", action="Type status to see the setups.")
        exp = dict(row["expected"])
        request = SetupRequest.from_dict(exp["request"])
        kept: dict[str, Any] = {}
        for finding in row["findings"]:
            if finding["step"] == StepName.APP_REGISTRATION.value:
                for c in finding["changes"]:
                    if c["field"] in KEEPABLE:
                        value = c.get("value")
                        kept[KEEPABLE[c["field"]]] = tuple(value or ()) if c["field"] == "web.redirectUris" else value
            elif finding["step"] == StepName.CUSTOMER_SERVICE_CONNECTION.value:
                kept["connect_customer_service"] = False
            elif finding["step"] == StepName.SERVICE_PRINCIPAL.value:
                kept["create_service_principal"] = False
        exp["request"] = dataclasses.replace(request, **kept).to_dict()
        exp["accepted"] = sorted(set(exp.get("accepted") or []) | set(drift_key(row["findings"])))
        await self.core.store.setups.update(subject, row["updated_at"], {"expected": exp, "findings": []}, job_id=row["job_id"],
                                            audit=[audit(actor, "kept_change", subject=subject, findings=row["findings"])])
        return await self.setup(subject)
