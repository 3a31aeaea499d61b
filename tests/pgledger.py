"""The ledger's own processes on the test clusters of ``tests.pgcluster``: a ``Stack``
on a cluster (or on any role URLs: a replica, several hosts) with the shared Kafka and
fresh topics, and the real ``ledger consume`` / ``ledger serve`` against it.
"""

from __future__ import annotations

import asyncio
import secrets
import subprocess
import sys
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from tests.pgcluster import Cluster, free_port
from tests.support import ROOT, Stack, kafka_security_env, run_ledger

T = TypeVar("T")


def in_thread(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion from sync or async code (in a thread of its own)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def ledger_stack(
    cluster: Cluster | None, stack_env: dict[str, str], tmp: Path, **urls: str
) -> Stack:
    """A ``Stack`` on ``cluster``'s ledger (its own signer, tokens and producer keys) and
    the shared Kafka, with fresh topic names. ``urls`` override the role URLs
    (``owner_url``, ``appender_url``, ``reader_url``: e.g. a replica, or several hosts)."""
    from ledger.log.keys import write_signer_file
    from ledger.log.note import generate_signer
    from tests.conftest import _issue_tokens

    signer_key, verifier_key = generate_signer("test.ledger.local")
    key_file = tmp / "signer.key"
    write_signer_file(key_file, [signer_key])

    def url(role: str) -> str:
        given = urls.get(f"{role.removeprefix('ledger_')}_url")
        if given is not None:
            return given
        if cluster is None:
            raise ValueError(f"no URL for {role}")
        return cluster.url(role)

    owner = url("ledger_owner")
    stack = Stack(
        kafka_bootstrap=stack_env["KAFKA_BOOTSTRAP"],
        owner_url=owner,
        appender_url=url("ledger_appender"),
        reader_url=url("ledger_reader"),
        database="ledger",
        run_id=secrets.token_hex(4),
        signer_key_file=str(key_file),
        verifier_key=verifier_key,
        tokens=in_thread(_issue_tokens(owner)),
        spool_dir=str(tmp / "spool"),
        keys_dir=str(tmp / "producer-keys"),
        kafka_env=kafka_security_env(stack_env),
    )
    done = run_ledger(stack.env(), "topics")
    if done.returncode != 0:
        raise RuntimeError(f"ledger topics failed: {done.stderr[-2000:]}")
    return stack


@contextmanager
def ledger_services(
    stack: Stack, logs: Path, *, consume: bool = True, serve: bool = True, **env: str
) -> Iterator[str]:
    """``ledger consume`` and/or ``ledger serve`` against ``stack`` (with ``env`` on top);
    yields the API's URL once it answers. Both are stopped (SIGTERM) afterwards."""
    port = free_port()
    api = f"http://127.0.0.1:{port}"
    # A consumer group of this stack's own: never the shared stack's (a rebalance there).
    env = {"LEDGER_CONSUMER_GROUP": f"t{stack.run_id}-ledger", **env}
    base = stack.env(LEDGER_API_URL=api, **env)
    api_env = {**base, "LEDGER_PRODUCER_KEY_FILE": stack.producer_key(f"api-{port}")}
    ledger = str(Path(sys.executable).with_name("ledger"))
    logs.mkdir(parents=True, exist_ok=True)
    commands = []
    if consume:
        commands.append(("consumer", [ledger, "consume"], base))
    if serve:
        commands.append(("api", [ledger, "serve", "--port", str(port)], api_env))
    procs = []
    try:
        for name, command, penv in commands:
            with (logs / f"{name}.log").open("ab") as out:
                procs.append(subprocess.Popen(command, env=penv, cwd=ROOT, stdout=out,
                                              stderr=subprocess.STDOUT))  # fmt: skip
        if serve:
            waited = run_ledger(base, "wait", "api", "--timeout", "90")
            if waited.returncode != 0:
                raise RuntimeError(f"the API did not start: {(logs / 'api.log').read_text()}")
        yield api
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
