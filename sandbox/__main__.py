"""`python -m sandbox`: run the emulated Microsoft cloud and print its configuration as NAME=value lines."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from datetime import timedelta
from pathlib import Path

from .app import Sandbox, SandboxOptions
from .faults import FaultSettings


def _duration(text: str) -> timedelta:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    text = text.strip().lower()
    if text[-1:] in units:
        return timedelta(seconds=float(text[:-1]) * units[text[-1]])
    return timedelta(seconds=float(text))


def parse_args(argv: list[str] | None) -> SandboxOptions:
    p = argparse.ArgumentParser(prog="python -m sandbox", description=__doc__)
    p.add_argument("--state", type=Path, default=Path("data/sandbox.db"), help="SQLite state file (default %(default)s)")
    p.add_argument("--cert-dir", type=Path, default=Path("data/sandbox-certs"), help="where the CA and server certificate live")
    p.add_argument("--authority-port", type=int, default=0)
    p.add_argument("--graph-port", type=int, default=0)
    p.add_argument("--dataverse-port", type=int, action="append", default=[], help="one per environment, in order")
    p.add_argument("--operator-port", type=int, default=0)
    p.add_argument("--portal-port", type=int, default=0, help="the plain-HTTP read-only portal pages")
    p.add_argument("--propagation-delay", type=_duration, default=timedelta(hours=2), help="e.g. 90s, 2m, 2h (default 2h)")
    p.add_argument("--publish-duration", type=_duration, default=timedelta(seconds=2))
    p.add_argument("--max-password-lifetime", default="P365D", help="tenant policy, ISO 8601 days like P365D; 'none' for no policy")
    p.add_argument("--block-password-addition", action="store_true",
                   help="tenant policy: addPassword fails with CredentialTypeNotAllowedAsPerAppPolicy (federated credentials stay allowed)")
    p.add_argument("--replication-delay", type=float, default=3.0, help="seconds a new object stays invisible")
    p.add_argument("--throttle-rate", type=float, default=0.0, help="share of calls answered 429")
    p.add_argument("--retry-after", type=float, default=1.0, help="Retry-After seconds on 429/503")
    p.add_argument("--unavailable-rate", type=float, default=0.0, help="share of calls answered 503")
    p.add_argument("--latency-ms", type=float, default=0.0, help="fixed latency added to every Graph and Dataverse call")
    p.add_argument("--dataverse-burst-rate", type=float, default=0.0, help="share of publish calls answered 401 or 400(429)")
    p.add_argument("--seed", type=int, default=None, help="random seed for the faults")
    a = p.parse_args(argv)
    try:
        faults = FaultSettings.from_dict({
            "replication_delay_s": a.replication_delay, "throttle_rate": a.throttle_rate, "retry_after_s": a.retry_after,
            "unavailable_rate": a.unavailable_rate, "latency_ms": a.latency_ms, "dataverse_burst_rate": a.dataverse_burst_rate,
            "seed": a.seed,
        })
    except ValueError as exc:
        p.error(str(exc))
    return SandboxOptions(
        state_path=a.state, cert_dir=a.cert_dir, faults=faults, propagation_delay=a.propagation_delay,
        publish_duration=a.publish_duration,
        max_password_lifetime=None if a.max_password_lifetime.lower() == "none" else a.max_password_lifetime,
        authority_port=a.authority_port, graph_port=a.graph_port, dataverse_ports=tuple(a.dataverse_port),
        operator_port=a.operator_port, portal_port=a.portal_port, block_password_addition=a.block_password_addition,
    )


async def serve(options: SandboxOptions) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    sandbox = Sandbox(options)
    await sandbox.start()
    for name, value in sandbox.env.items():
        sys.stdout.write(f"{name}={value}\n")
    sys.stdout.flush()
    await stop.wait()
    await sandbox.stop()


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(serve(parse_args(argv)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
