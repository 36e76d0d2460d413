"""`python -m provisioning`: the setup without Teams, for automation pipelines.

Commands:
  agents                          list the agents in DATAVERSE_URL's environments
  plan REQUEST                    validate, preflight and show what would change (REQUEST: JSON or YAML file, or - for stdin)
  apply REQUEST [--yes]           plan, approve and run the job until it needs you, fails or completes
  status [JOB]                    one job in detail, or every job
  confirm-step JOB STEP           say a guided step is done (--override to continue past a failed check;
                                  --sandbox to have the sandbox's emulated Copilot Studio do it)
  secret JOB --out FILE           write the one-time client secret to FILE (created 0600), once, for its requester
  resume [--until-idle]           run the worker: resumes unfinished jobs after a crash
  watch                           check every setup now (credential expiry, drift); exit 7 if one needs attention
  rotate SETUP [--federated]      plan a new client secret (or the switch to a federated credential), approve, run
  repair SETUP                    plan putting a setup's drift back, approve, run
  keep SETUP                      record a setup's drift as approved
  remove SETUP                    plan the removal of what the bot made for an agent, approve, run
  (SETUP: the agent's name, or the id of the job that set it up; `status` lists the setups)

Exit codes: 0 done (or nothing to do), 1 the job failed or an unexpected error, 2 invalid request or usage,
3 preflight failed (the provisioning identity lacks a permission), 4 the plan went stale, 5 waiting for an operator
(a guided step), 6 waiting for the secured-access propagation window, 7 a setup needs attention (watch).

The client secret is never printed by plan, apply or status: only `secret --out FILE` writes it, once.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import logging
import os
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import TextIO

import yaml

from .config import Settings
from .dates import when
from .errors import ConfigurationError, PreflightFailed, ProvisioningError, StalePlanError, ValidationFailed
from .models import Actor, JobStatus, JobView, Plan, SetupRequest, StepName, StepStatus
from .service import ProvisioningService
from .setups import PUT_BACK, REMOVE_SETUP, ROTATE_SECRET, SWITCH_TO_FEDERATED, SetupView
from .steps.base import parse_time

EXIT_OK, EXIT_FAILED, EXIT_INVALID, EXIT_PREFLIGHT, EXIT_STALE, EXIT_WAITING, EXIT_PROPAGATING, EXIT_ATTENTION = range(8)
CHANGES = {"rotate": ROTATE_SECRET, "repair": PUT_BACK, "remove": REMOVE_SETUP}  # command → the day-two change it plans
STATUS_EXIT = {JobStatus.COMPLETED: EXIT_OK, JobStatus.FAILED: EXIT_FAILED, JobStatus.CANCELLED: EXIT_FAILED,
               JobStatus.WAITING_FOR_OPERATOR: EXIT_WAITING, JobStatus.PROPAGATING: EXIT_PROPAGATING}


def read_request(source: str) -> SetupRequest:
    text = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    if not isinstance(data, dict) or "agent" not in data:
        raise ValueError("the request must be a mapping with at least 'agent' (environment_url and schema_name) and 'app_display_name'")
    unknown = set(data) - set(SetupRequest.__dataclass_fields__)
    if unknown:
        raise ValueError(f"unknown field(s) in the request: {', '.join(sorted(unknown))}")
    return SetupRequest.from_dict(data)


def print_plan(plan: Plan, out: TextIO) -> None:
    out.write(f"Plan {plan.hash[:12]} for agent '{plan.agent.name}' ({plan.agent.environment_url})\n")
    marks = {"create": "+", "update": "~", "no_change": "=", "manual": "!", "delete": "-"}
    for step in plan.steps:
        out.write(f"  {marks[step.action.value]} {step.step.value}: {step.summary}\n")
        for change in step.changes:
            out.write(f"      {change.field}: {json.dumps(change.before)} -> {json.dumps(change.after)}\n")
        for note in step.notes:
            out.write(f"      ({note})\n")
    for check in plan.preflight.checks:
        out.write(f"  preflight {'ok' if check.ok else 'FAILED'}: {check.message}\n")
    out.write("  legend: + create, ~ update, - delete, = no change, ! you do it by hand (the bot verifies)\n")


def print_job(job: JobView, out: TextIO) -> None:
    out.write(f"Job {job.id}: {job.status.value} (agent '{job.agent.name}', plan {job.plan_hash[:12]})\n")
    for step in job.steps:
        line = f"  {step.step.value}: {step.status.value}"
        if step.message:
            line += f" - {step.message}"
        out.write(line + "\n")
        if step.verification and step.status == StepStatus.WAITING_FOR_OPERATOR:
            out.write(f"      last check: {step.verification}\n")
        for key, value in step.outputs.items():
            out.write(f"      {key}: {value}\n")
        if step.instructions and step.status == StepStatus.WAITING_FOR_OPERATOR:
            for n, text in enumerate(step.instructions.steps, 1):
                out.write(f"      {n}. {text}\n")
            out.write(f"      then: python -m provisioning confirm-step {job.id} {step.step.value}\n")
    if job.secret_available:
        out.write(f"  The client secret waits for its requester: python -m provisioning secret {job.id} --out FILE\n")


async def run_until_settled(svc: ProvisioningService, job_id: str) -> JobView:
    seq = 0
    while True:
        job = await svc.get_job(job_id)
        if job.status not in (JobStatus.QUEUED, JobStatus.RUNNING):
            return job
        events = await svc.wait_for_events(seq, 1.0)
        if events:
            seq = events[-1].seq


async def until_idle(svc: ProvisioningService) -> None:
    """Run the worker until no job is queued, running or being cancelled and no reminder is due within a minute."""
    while await svc.busy(within=60):
        await svc.wait_for_events(await svc.last_seq(), 0.5)


def print_setup(setup: SetupView, out: TextIO) -> None:
    health = "removed" if setup.status == "removed" else ("as approved" if setup.healthy else "CHANGED since approval")
    out.write(f"Setup of '{setup.agent_name}' ({setup.environment_name}): {health}; job {setup.job_id}\n")
    out.write(f"  credential: {setup.credential}" + (f", expires {setup.secret_expires}" if setup.secret_expires else "") + "\n")
    out.write(f"  last check: {when(setup.last_check_at) + ': ' + setup.last_result if setup.last_check_at else 'not yet'}\n")
    for finding in setup.findings:
        out.write(f"  drift: {finding['summary']}\n")
        for c in finding.get("changes") or ():
            out.write(f"      {c['field']}: approved {c['approved']}; now {c['now']}\n")
    if setup.open_job:
        out.write(f"  a change is in progress: job {setup.open_job}\n")


def needs_attention(setup: SetupView) -> bool:
    if setup.status != "active":
        return False
    expires = parse_time(setup.secret_expires) if setup.secret_expires else None
    return bool(setup.findings) or (expires is not None and (expires - datetime.now(timezone.utc)).days < 30)


async def approve_and_run(svc: ProvisioningService, plan: Plan, args: argparse.Namespace, out: TextIO) -> int:
    """Show the plan, take the approval (--yes, or typed), run the job until it needs someone, fails or completes.
    With --json only the job is written, as JSON."""
    as_json = getattr(args, "json", False)
    if not as_json:
        print_plan(plan, out)
    if not args.yes:
        if not sys.stdin.isatty():
            out.write("Not applied: pass --yes to approve this plan non-interactively.\n")
            return EXIT_INVALID
        if input("Apply this plan? Type yes: ").strip().lower() != "yes":
            out.write("Not applied.\n")
            return EXIT_OK
    who = actor(args)
    job = await run_until_settled(svc, (await svc.submit(plan, who, who, {"source": "cli"})).id)
    json.dump(job.to_dict(), out, indent=2) if as_json else print_job(job, out)
    return STATUS_EXIT.get(job.status, EXIT_FAILED)


def actor(args: argparse.Namespace) -> Actor:
    name = args.as_user or os.environ.get("PROVISIONING_OPERATOR") or getpass.getuser()
    return Actor(id=f"cli:{name}", name=name)


async def main_async(args: argparse.Namespace, out: TextIO) -> int:
    settings = Settings.from_env()
    svc = ProvisioningService(settings, run_worker=args.command in ("apply", "resume", "confirm-step", "rotate", "repair", "remove"))
    await svc.start()
    try:
        if args.command == "agents":
            agents = await svc.list_agents()
            if args.json:
                json.dump([a.to_dict() for a in agents], out, indent=2)
                out.write("\n")
            for a in agents if not args.json else []:
                out.write(f"{a.schema_name}\t{a.name}\t{a.environment_url}\t{a.bot_id}\n")
            return EXIT_OK
        if args.command == "plan":
            plan = await svc.plan(read_request(args.request))
            json.dump(plan.to_dict(), out, indent=2) if args.json else print_plan(plan, out)
            return EXIT_OK
        if args.command == "apply":
            return await approve_and_run(svc, await svc.plan(read_request(args.request)), args, out)
        if args.command == "status":
            jobs = [await svc.get_job(args.job)] if args.job else await svc.list_jobs()
            if args.json:
                json.dump([j.to_dict() for j in jobs], out, indent=2)
                out.write("\n")
                return EXIT_OK
            for job in jobs:
                print_job(job, out)
            if not jobs:
                out.write("No setup jobs yet.\n")
            for setup in [] if args.job else await svc.setups():
                print_setup(setup, out)
            return EXIT_OK
        if args.command == "watch":
            setups = await svc.check_all()
            for setup in setups:
                print_setup(setup, out)
            if not setups:
                out.write("No setups yet.\n")
            return EXIT_ATTENTION if any(needs_attention(s) for s in setups) else EXIT_OK
        if args.command in CHANGES:
            setup = await svc.find_setup(args.setup)
            change = SWITCH_TO_FEDERATED if args.command == "rotate" and args.federated else CHANGES[args.command]
            return await approve_and_run(svc, await svc.propose(setup.subject, change), args, out)
        if args.command == "keep":
            setup = await svc.find_setup(args.setup)
            print_setup(await svc.keep_change(setup.subject, actor(args)), out)
            return EXIT_OK
        if args.command == "confirm-step":
            step = StepName(args.step)
            if args.sandbox:
                job = await svc.perform_in_sandbox(args.job, step, actor(args))
            elif step == StepName.FEDERATED_CREDENTIAL:
                if not (args.issuer and args.subject):
                    out.write("The federated credential needs --issuer and --subject: the values Copilot Studio shows.\n")
                    return EXIT_INVALID
                job = await svc.federated_values(args.job, actor(args), issuer=args.issuer, subject=args.subject)
            else:
                job = await svc.confirm_step(args.job, step, actor(args), override=args.override)
            job = await run_until_settled(svc, job.id)
            print_job(job, out)
            return STATUS_EXIT.get(job.status, EXIT_FAILED)
        if args.command == "secret":
            target = Path(args.out)
            if target.exists():
                out.write(f"{target} exists; choose a new file so the secret is not mixed with anything else.\n")
                return EXIT_INVALID
            secret = await svc.take_secret(args.job, actor(args))
            fd = os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secret + "\n")
            del secret
            out.write(f"The client secret was written to {target} (mode 0600). It cannot be retrieved again.\n")
            return EXIT_OK
        if args.command == "resume":
            if args.until_idle:
                await until_idle(svc)
            else:
                await asyncio.Event().wait()
            return EXIT_OK
        raise AssertionError(args.command)
    finally:
        await svc.close()


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m provisioning", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--as", dest="as_user", help="who you are, for the audit log (default: $PROVISIONING_OPERATOR or your login)")
    p.add_argument("--verbose", action="store_true", help="log progress to stderr")
    sub = p.add_subparsers(dest="command", required=True)
    a = sub.add_parser("agents")
    a.add_argument("--json", action="store_true")
    for name in ("plan", "apply"):
        c = sub.add_parser(name)
        c.add_argument("request", help="JSON or YAML file, or - for stdin")
        c.add_argument("--json", action="store_true")
        if name == "apply":
            c.add_argument("--yes", action="store_true", help="approve the plan without asking")
    s = sub.add_parser("status")
    s.add_argument("job", nargs="?")
    s.add_argument("--json", action="store_true")
    c = sub.add_parser("confirm-step")
    c.add_argument("job")
    c.add_argument("step", choices=[StepName.FEDERATED_CREDENTIAL.value, *(s.value for s in StepName if s.guided)])
    c.add_argument("--issuer", help="federated_credential: the issuer Copilot Studio shows")
    c.add_argument("--subject", help="federated_credential: the value (subject identifier) Copilot Studio shows")
    c.add_argument("--override", action="store_true", help="continue although the check failed (recorded)")
    c.add_argument("--sandbox", action="store_true", help="let the sandbox's emulated Copilot Studio do the step")
    k = sub.add_parser("secret")
    k.add_argument("job")
    k.add_argument("--out", required=True, help="a new file to write the secret to (mode 0600)")
    sub.add_parser("watch")
    for name in ("rotate", "repair", "remove", "keep"):
        d = sub.add_parser(name)
        d.add_argument("setup", help="the agent's name, or the id of the job that set it up")
        if name != "keep":
            d.add_argument("--yes", action="store_true", help="approve the plan without asking")
        if name == "rotate":
            d.add_argument("--federated", action="store_true", help="switch to a federated credential instead (no secret)")
    r = sub.add_parser("resume")
    r.add_argument("--until-idle", action="store_true", help="exit when no job is queued or running")
    return p


def main(argv: list[str] | None = None, out: TextIO = sys.stdout) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return asyncio.run(main_async(args, out))
    except ConfigurationError as exc:
        sys.stderr.write(f"Configuration: {exc.user_message()}\n")
        return EXIT_INVALID
    except ValidationFailed as exc:
        for error in exc.field_errors:
            sys.stderr.write(f"{error.field}: {error.message}\n")
        return EXIT_INVALID
    except PreflightFailed as exc:
        for check in exc.report.checks:
            if not check.ok:
                sys.stderr.write(f"preflight: {check.message}\n  to fix: {check.remedy}\n")
        return EXIT_PREFLIGHT
    except StalePlanError as exc:
        sys.stderr.write(exc.user_message() + "\n")
        return EXIT_STALE
    except ProvisioningError as exc:
        sys.stderr.write(exc.user_message() + "\n")
        return EXIT_FAILED
    except (ValueError, OSError, yaml.YAMLError) as exc:
        sys.stderr.write(f"{exc}\n")
        return EXIT_INVALID

