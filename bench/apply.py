"""Provisioning apply time against the sandbox with a fixed latency per Microsoft call, and its critical path.

    python -m bench.apply [--latency-ms 100] [--runs 3] [--name apply]

On SQLite (a fresh file per setup), or on PostgreSQL when BENCH_APPLY_DATABASE_URLS holds one fresh database URL per
run, separated by spaces (from the environment: a URL carries a password, which a command line would show to `ps`).

A fresh client-secret setup (the stretches below; the default credential is now federated, whose approve stretch ends at
the person's copy of two values from Copilot Studio) has four automated stretches, each started by a person (the approver, then the operator after each
step Microsoft offers no API for) and ending when the job hands back to a person or completes:

    approve            re-read the tenant (stale-plan check: the agent, then its application user, which is found by
                       the agent's application id) → create the app registration → add the client secret
    auth confirmed     read the agent (verify manual authentication) → publish → read the publish status
    secured confirmed  read the agent → find its application user (needs the agent's application id)
    service connected  read the agent → find its application user (verify the connection)

The critical path of a stretch is the latency of the calls that must follow one another (listed above: each needs
the answer of the one before, or must see what a person just did); reads that do not depend on each other count
once. Apply time is measured at the service's API, from the person's action to the hand-off, with every Microsoft
call recorded (method, path, start, end). The sandbox adds the fixed latency to every Graph and Dataverse call,
finishes publishes at once and has no replication delay, so what remains is the bot's own sequencing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Awaitable, Callable

import httpx

from bench import output
from provisioning import Actor, JobStatus, ProvisioningService, Settings, StepName, StepStatus
from provisioning.http import RetryPolicy
from provisioning.models import CLIENT_SECRET
from sandbox import Sandbox, SandboxOptions
from sandbox.faults import FaultSettings
from store import Database

CRITICAL_ROUNDS = {"approve": 4, "auth confirmed": 3, "secured confirmed": 2, "service connected": 2}
PERSON = Actor("11111111-1111-1111-1111-111111111111", "Bench Operator")


@dataclass
class Call:
    method: str
    path: str
    start: float
    end: float = 0.0


@dataclass
class Recorder:
    calls: list[Call] = field(default_factory=list)

    def attach(self, client: httpx.AsyncClient) -> None:
        async def request(r: httpx.Request) -> None:
            r.extensions["bench_call"] = call = Call(r.method, r.url.path, time.perf_counter())
            self.calls.append(call)

        async def response(r: httpx.Response) -> None:
            call: Call | None = r.request.extensions.get("bench_call")
            if call is not None:
                call.end = time.perf_counter()

        client.event_hooks["request"].append(request)
        client.event_hooks["response"].append(response)


def rounds(calls: list[Call]) -> int:
    """How many latencies one after another the calls took: a call starting after the current round's calls all
    ended begins a new round."""
    count, round_end = 0, float("-inf")
    for call in sorted(calls, key=lambda c: c.start):
        if call.start >= round_end:
            count += 1
            round_end = call.end
        else:
            round_end = max(round_end, call.end)
    return count


async def _stretch(name: str, recorder: Recorder, action: Callable[[], Awaitable[Any]], done: Callable[[], Awaitable[bool]],
                   db: Database) -> dict[str, Any]:
    """Times one stretch: from the person's action to the commit after which `done` holds. The job is checked after
    each committed change (the store's change counter, which every job write bumps), not polled: a tight polling
    loop competes with the service for the event loop, and costs more on a backend whose reads cost more."""
    first = len(recorder.calls)
    started = time.perf_counter()
    seen = db.changes
    await action()
    woke = time.perf_counter()
    while not await done():
        await db.wait_for_change(seen, 0.05)
        seen = db.changes
        woke = time.perf_counter()
    seconds = woke - started
    calls = [c for c in recorder.calls[first:] if c.start <= started + seconds]
    return {"stretch": name, "seconds": seconds, "calls": len(calls), "rounds": rounds(calls),
            "paths": [f"{c.method} {c.path}" for c in calls]}


async def one_setup(tmp: Path, latency_ms: float, schema: str, database_url: str = "") -> list[dict[str, Any]]:
    sandbox = Sandbox(SandboxOptions(state_path=tmp / "sandbox.db", cert_dir=tmp / "certs",
                                     faults=FaultSettings(replication_delay_s=0, latency_ms=latency_ms),
                                     publish_duration=timedelta(0), propagation_delay=timedelta(seconds=1)))
    await sandbox.start()
    env = dict(sandbox.env) | {"STATE_DB": str(tmp / "state.db"), "SECRET_KEY_FILE": str(tmp / "secret.key"), "PROPAGATION_DELAY": "1s",
                               "PUBLISH_POLL_INTERVAL": "0.01s", "REPLICATION_SETTLE": "0.1s"}
    if database_url:
        env["DATABASE_URL"] = database_url
    service = ProvisioningService(Settings.from_env(env, dotenv=None), retry=RetryPolicy(base_delay=0.01), worker_poll_interval=0.01)
    await service.start()
    recorder = Recorder()
    for client in service.core._clients:
        recorder.attach(client)
    try:
        from provisioning import AgentRef, SetupRequest

        agents = {a.schema_name: a for a in await service.list_agents()}
        agent = agents[schema]
        request = SetupRequest(agent=AgentRef(agent.environment_url, schema_name=agent.schema_name, bot_id=agent.bot_id),
                               app_display_name=f"{agent.name} auth"[:120], credential=CLIENT_SECRET)
        plan = await service.plan(request)
        job_id = ""

        async def approve() -> None:
            nonlocal job_id
            job_id = (await service.submit(plan, PERSON, PERSON)).id

        def waiting(step: StepName) -> Callable[[], Awaitable[bool]]:
            async def check() -> bool:
                view = await service.get_job(job_id)
                if view.status == JobStatus.FAILED:
                    raise RuntimeError(f"the job failed: {[(s.step.value, s.message) for s in view.steps]}")
                return view.step(step).status == StepStatus.WAITING_FOR_OPERATOR
            return check

        async def completed_or_propagating() -> bool:
            view = await service.get_job(job_id)
            return view.step(StepName.CUSTOMER_SERVICE_CONNECTION).status == StepStatus.DONE

        db = service.store.db
        results = [await _stretch("approve", recorder, approve, waiting(StepName.COPILOT_AUTHENTICATION), db)]
        job = await service.get_job(job_id)
        secret = await service.take_secret(job_id, PERSON)
        assert service.core.operator is not None
        await service.core.operator.manual_authentication(agent.bot_id, client_id=job.step(StepName.APP_REGISTRATION).outputs["client_id"],
                                                     client_secret=secret)
        del secret
        results.append(await _stretch("auth confirmed", recorder, lambda: service.confirm_step(job_id, StepName.COPILOT_AUTHENTICATION, PERSON),
                                      waiting(StepName.SECURED_ACCESS), db))
        await service.core.operator.enable_secured_access(agent.bot_id)
        results.append(await _stretch("secured confirmed", recorder, lambda: service.confirm_step(job_id, StepName.SECURED_ACCESS, PERSON),
                                      waiting(StepName.CUSTOMER_SERVICE_CONNECTION), db))
        await service.core.operator.connect_customer_service(agent.bot_id)
        results.append(await _stretch("service connected", recorder,
                                      lambda: service.confirm_step(job_id, StepName.CUSTOMER_SERVICE_CONNECTION, PERSON), completed_or_propagating, db))
        return results
    finally:
        await service.close()
        await sandbox.stop()


def summarize(runs: list[list[dict[str, Any]]], latency_ms: float) -> dict[str, Any]:
    stretches = []
    for i, name in enumerate(CRITICAL_ROUNDS):
        seconds = statistics.median(run[i]["seconds"] for run in runs)
        critical = CRITICAL_ROUNDS[name] * latency_ms / 1000
        stretches.append({"stretch": name, "seconds": seconds, "critical_s": critical, "ratio": seconds / critical,
                          "calls": runs[0][i]["calls"], "rounds": runs[0][i]["rounds"], "critical_rounds": CRITICAL_ROUNDS[name],
                          "paths": runs[0][i]["paths"]})
    total = sum(s["seconds"] for s in stretches)
    critical = sum(s["critical_s"] for s in stretches)
    return {"latency_ms": latency_ms, "runs": len(runs), "stretches": stretches, "apply_s": total, "critical_path_s": critical,
            "ratio": total / critical}


def markdown(result: dict[str, Any]) -> str:
    lines = [f"Provisioning apply, {result['latency_ms']:.0f} ms per Microsoft call (median of {result['runs']} fresh setups):", "",
             "| stretch | apply s | critical path s | ratio | calls | rounds taken | rounds needed |", "|---|---|---|---|---|---|---|"]
    for s in result["stretches"]:
        lines.append(f"| {s['stretch']} | {s['seconds']:.3f} | {s['critical_s']:.3f} | {s['ratio']:.2f} | {s['calls']} | {s['rounds']} | {s['critical_rounds']} |")
    lines.append(f"| **total** | **{result['apply_s']:.3f}** | **{result['critical_path_s']:.3f}** | **{result['ratio']:.2f}** | | | |")
    return "\n".join(lines) + "\n"


async def run(latency_ms: float, count: int, database_urls: list[str]) -> dict[str, Any]:
    if database_urls and len(database_urls) < count:
        raise SystemExit(f"BENCH_APPLY_DATABASE_URLS holds {len(database_urls)} URLs for {count} runs")
    runs = []
    for i in range(count):
        with tempfile.TemporaryDirectory(prefix="bench-apply-") as tmp:  # a fresh sandbox (and database) each time
            url = database_urls[i] if database_urls else ""
            runs.append(await one_setup(Path(tmp), latency_ms, "cr6a1_contosoSupport", url))
    return {**summarize(runs, latency_ms), "backend": "postgres" if database_urls else "sqlite"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latency-ms", type=float, default=100.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    parser.add_argument("--name", default="apply", help="the results' file names: <out>/<name>.json and .md")
    args = parser.parse_args(argv)
    urls = os.environ.get("BENCH_APPLY_DATABASE_URLS", "").split()
    result = asyncio.run(run(args.latency_ms, args.runs, urls))
    output.write(args.out, args.name, result, markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
