"""A Kafka cluster of a test's or a benchmark's own, started by deploy/local/kafka.sh.

Invariant: it never touches the shared stack's broker: its data, logs, secrets (its own
CA, broker certificate and SCRAM passwords), pid files and ports are its own; only the
jar cache under .local/kafka is shared. Same security as `make up` (SASL_SSL, mTLS
controllers, the ACLs of deploy/local/kafka/acls.txt).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError

from ledgerctl.settings import KafkaRole, kafka_security_from_env
from producers.kafka_security import KafkaSecurity, client_kwargs
from tests.ports import free_ports_at

ROOT = Path(__file__).resolve().parents[1]
KAFKA_SH = ROOT / "deploy" / "local" / "kafka.sh"
#: kafka.sh's layout: node N listens on port + STEP*(N-1), its controller likewise.
STEP = 100


def free_base_port(brokers: int) -> int:
    """A base port whose client and controller ports (base, base+1, plus STEP per node)
    are all free, below Linux's ephemeral range (tests/ports.py)."""
    return free_ports_at([STEP * i + j for i in range(brokers) for j in (0, 1)])


@dataclass(frozen=True, slots=True, kw_only=True)
class KafkaCluster:
    """``brokers`` KRaft nodes (broker + controller each) under ``home``."""

    home: Path
    port: int
    brokers: int = 3
    heap: str = "384m"
    #: C1 only: three JVMs' C2 compilers burned ~10 of the 24 CPU seconds a start took
    #: on two cores (14.8 s instead of 20.8 s to ready); a test's streams are too short
    #: for C2's code to pay that back.
    jvm_opts: str = "-XX:TieredStopAtLevel=1 -XX:-UsePerfData"

    @property
    def bootstrap(self) -> str:
        return ",".join(f"127.0.0.1:{self.node_port(n)}" for n in self.nodes)

    @property
    def nodes(self) -> range:
        return range(1, self.brokers + 1)

    def node_port(self, node: int) -> int:
        return self.port + STEP * (node - 1)

    @property
    def kafka_env(self) -> Mapping[str, str]:
        """The client settings of this cluster (KAFKA_SECURITY_VARS), as `make up` writes."""
        secrets = self.home / "secrets"
        return MappingProxyType(
            {
                "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
                "KAFKA_SSL_CA_FILE": str(secrets / "ca.crt"),
                "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
                "LEDGER_KAFKA_CREDENTIALS_DIR": str(secrets / "users"),
            }
        )

    def kafka(self, role: KafkaRole) -> KafkaSecurity:
        return kafka_security_from_env(self.kafka_env, role)

    def client(self, role: KafkaRole) -> dict[str, Any]:
        """Keyword arguments for a raw aiokafka client authenticated as ``role``."""
        return {"bootstrap_servers": self.bootstrap, **client_kwargs(self.kafka(role))}

    def _script_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("LEDGER_", "KAFKA_"))}
        env.update(
            KAFKA_BROKERS=str(self.brokers),
            LEDGER_KAFKA_HOME=str(self.home / "kafka"),
            LEDGER_KAFKA_SECRETS_DIR=str(self.home / "secrets"),
            LEDGER_KAFKA_RUN_DIR=str(self.home / "run"),
            LEDGER_KAFKA_PORT=str(self.port),
            LEDGER_KAFKA_CONTROLLER_PORT=str(self.port + 1),
            LEDGER_KAFKA_HEAP=self.heap,
            LEDGER_KAFKA_JVM_OPTS=self.jvm_opts,
            LEDGER_ENV_FILE=os.devnull,
        )
        return env

    def script(self, *args: str, timeout: float = 400) -> subprocess.CompletedProcess[str]:
        """Run kafka.sh on this cluster (not checked)."""
        return subprocess.run(
            [str(KAFKA_SH), *args], env=self._script_env(), cwd=ROOT,
            capture_output=True, text=True, timeout=timeout, check=False,
        )  # fmt: skip

    def start(self) -> None:
        """Start every node that is not running and wait until each serves clients."""
        done = self.script("start")
        if done.returncode != 0:
            raise RuntimeError(f"kafka.sh start failed:\n{done.stderr[-3000:]}")

    def stop(self) -> None:
        self.script("stop", timeout=120)

    def _pidfile(self, node: int) -> Path:
        name = "kafka.pid" if self.brokers == 1 else f"kafka-node-{node}.pid"
        return self.home / "run" / name

    def pid(self, node: int) -> int | None:
        try:
            pid = int(self._pidfile(node).read_text().strip())
            # A killed JVM whose parent (init here) has not reaped it yet is dead too.
            state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
        except (OSError, ValueError, IndexError):
            return None
        return None if state in ("Z", "X") else pid

    def kill(self, node: int) -> float:
        """SIGKILL node ``node`` (a crashed host); the wall-clock time of the kill."""
        pid = self.pid(node)
        if pid is None:
            raise RuntimeError(f"Kafka node {node} is not running")
        killed_at = time.time()
        os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)  # not our child (setsid): fall back to polling
        while self.pid(node) is not None:
            time.sleep(0.01)
        return killed_at

    def log_tail(self, node: int) -> str:
        name = "kafka" if self.brokers == 1 else f"kafka/cluster/node-{node}"
        path = self.home / name / "logs" / "server.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    async def partitions(self, topic: str) -> dict[int, tuple[int, tuple[int, ...]]]:
        """partition -> (leader node id or -1, in-sync replica node ids), from the cluster.

        Asks a live node: aiokafka's admin client sends to any node it knows, and retries
        here while a dead one is still in its metadata."""
        live = ",".join(f"127.0.0.1:{self.node_port(n)}" for n in self.nodes if self.pid(n))
        last: Exception | None = None
        for _ in range(20):
            admin = AIOKafkaAdminClient(
                bootstrap_servers=live, request_timeout_ms=5000,
                **client_kwargs(self.kafka(KafkaRole.ADMIN)),
            )  # fmt: skip
            try:
                await admin.start()
                (described,) = await admin.describe_topics([topic])
                return {
                    p["partition"]: (p["leader"], tuple(sorted(p["isr"])))
                    for p in described["partitions"]
                }
            except (KafkaError, OSError) as exc:
                last = exc
            finally:
                await admin.close()
            await asyncio.sleep(0.5)
        raise RuntimeError(f"cannot describe {topic}: {last!r}")


async def replication_of(client: dict[str, Any], topic: str) -> tuple[set[int], int]:
    """A topic's replica counts (one per partition, as a set) and its min.insync.replicas,
    described with ``client`` (an admin principal's aiokafka arguments)."""
    admin = AIOKafkaAdminClient(**client)
    await admin.start()
    try:
        (described,) = await admin.describe_topics([topic])
        (response,) = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic)]
        )
        (resource,) = response.resources
        min_isr = next(int(c[1]) for c in resource[4] if c[0] == "min.insync.replicas")
        return {len(p["replicas"]) for p in described["partitions"]}, min_isr
    finally:
        await admin.close()
