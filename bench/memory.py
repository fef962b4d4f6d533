"""Memory at 10,000 memories: recall latency, insert throughput, disk size.

Real embedded Chroma and the real offline model (all-MiniLM-L6-v2 on onnxruntime), as the
bot runs them by default.  The store is built with `add_many` (one embedding batch and one
write per 128 memories, each item still checked for near-duplicates), then:

- recall: one question at a time, as the agent asks before each request (query embedding
  included), scopes [shared, one user's private], k=6, identifier leeway on.
  Target: p95 < 50 ms.
- insert: one `add` at a time (embedding + near-duplicate check + write), as memory_store does.
- disk: the size of the Chroma directory.

With `--keep DIR` the store stays in DIR and a later run with the same DIR measures again
without rebuilding it (the inserts of each run are added on top, about new hosts).

    .venv/bin/python bench/memory.py [--memories 10000] [--queries 300] [--inserts 200] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.memory.embeddings import shared_offline_embedding
from core.memory.store import SHARED_SCOPE, MemoryStore, NewMemory, private_scope

ROLES = ["web", "db", "cache", "queue", "worker", "mon", "lb", "build", "mail", "vpn", "nas", "k8s"]
PEOPLE = ["Alice", "Bob", "Carol", "Dave", "Erin", "Frank", "Grace", "Heidi", "Ivan", "Judy"]
SERVICES = ["billing", "search", "auth", "payments", "reports", "chat", "media", "api", "cron", "ledger"]
TEMPLATES = [
    "postgres on {h} listens on port {p}",
    "{h} has {g} GB of RAM and {c} cores",
    "backups of {h} run nightly at {hh}:00 to {h2}",
    "{h} runs nginx in front of the {svc} service",
    "{person} is responsible for {h}",
    "{h} sits in rack {r} of the {dc} datacenter",
    "the /var volume on {h} is {s} GB",
    "never reboot {h} during the {svc} batch window",
    "{h} ships its logs to {h2}",
    "the TLS certificate of {h}.example.com renews on day {d} of the month",
    "the {svc} containers on {h} are managed with docker compose in /srv/{svc}",
    "{h} is reachable from the office only through the VPN",
    "redis on {h} uses database {d} for {svc} sessions",
    "{h} was migrated to Debian 12 in week {d}",
    "the {svc} queue on {h} must stay below {p} messages",
    "{person} prefers to be paged by SMS about {h}",
    "cron on {h} rotates the {svc} logs every {c} hours",
    "{h} mounts the shared NFS export from {h2}",
    "the firewall on {h} only allows SSH from {h2}",
    "{h} runs the {svc} workers with {c} processes",
]
QUESTIONS = [
    "which port does postgres on {h} use?",
    "how much memory does {h} have?",
    "when are the backups of {h} taken?",
    "who looks after {h}?",
    "where is {h} physically?",
    "can I reboot {h} now?",
    "where do the logs of {h} go?",
    "when does the certificate for {h} expire?",
    "how is the {svc} service deployed?",
    "what do you remember about {h}?",
    "is the {svc} queue backing up?",
    "how do I reach {h} from home?",
]


def host(rng: random.Random, count: int) -> str:
    return f"{rng.choice(ROLES)}{rng.randrange(1, count)}"


def make_memories(n: int, rng: random.Random, users: list[str], *, first_host: int = 0) -> list[NewMemory]:
    """``n`` distinct facts: each template once per host, so none is a near-duplicate of another."""
    hosts_needed = n // len(TEMPLATES) + 1
    hosts = [f"{ROLES[i % len(ROLES)]}{i // len(ROLES) + 1}" for i in range(first_host, first_host + hosts_needed)]
    items: list[NewMemory] = []
    for i in range(n):
        template = TEMPLATES[i % len(TEMPLATES)]
        h = hosts[i // len(TEMPLATES)]
        text = template.format(
            h=h, h2=host(rng, hosts_needed), p=rng.randrange(1024, 65000), g=rng.choice([4, 8, 16, 32, 64, 128]),
            c=rng.choice([2, 4, 8, 16, 32]), hh=rng.randrange(0, 24), svc=rng.choice(SERVICES),
            person=rng.choice(PEOPLE), r=rng.randrange(1, 40), dc=rng.choice(["fra1", "ams2", "par3", "lon1"]),
            s=rng.choice([50, 100, 200, 500]), d=rng.randrange(1, 28),
        )  # fmt: skip
        private = rng.random() < 0.1
        scope = private_scope("bench", rng.choice(users)) if private else SHARED_SCOPE
        source = {"platform": "bench", "channel": "C-bench", "user": rng.choice(users)}
        items.append(NewMemory(text, kind="fact", scope=scope, source=source))
    return items


def disk_size(path: Path) -> int:
    return sum(os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(path) for f in files)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main(memories: int, queries: int, inserts: int, keep: Path | None) -> None:
    rng = random.Random(7)
    users = [f"U{n:03d}" for n in range(50)]
    tmp = keep or Path(tempfile.mkdtemp(prefix="orch-bench-memory-"))
    path = tmp / "memory"
    embedding = shared_offline_embedding()
    embedding(["warm up"])
    items = make_memories(memories, rng, users)

    with MemoryStore(path, embedding=embedding) as store:
        if store.count() >= memories:  # --keep DIR from an earlier run: measure again without rebuilding
            held = store.count()
            print(f"reusing the {held:,} memories at {path}")
        else:
            start = time.perf_counter()
            store.add_many(items, batch_size=128)
            built = time.perf_counter() - start
            held = store.count()
            print(f"built {held:,} memories with add_many in {built:.1f} s ({held / built:,.0f} memories/s)")

        hosts_needed = memories // len(TEMPLATES) + 1
        asked = [
            rng.choice(QUESTIONS).format(h=host(rng, hosts_needed), svc=rng.choice(SERVICES))
            for _ in range(queries + 10)
        ]
        latencies: list[float] = []
        found = 0
        for n, question in enumerate(asked):
            scopes = [SHARED_SCOPE, private_scope("bench", rng.choice(users))]
            start = time.perf_counter()
            hits = store.recall(question, scopes=scopes, k=6, identifier_leeway=True)
            elapsed = time.perf_counter() - start
            if n >= 10:  # warm-up excluded
                latencies.append(elapsed * 1000)
                found += bool(hits)
        print(
            f"recall over {held:,} memories ({queries} questions, query embedding included): "
            f"p50 {statistics.median(latencies):.1f} ms, p95 {percentile(latencies, 0.95):.1f} ms, "
            f"p99 {percentile(latencies, 0.99):.1f} ms, max {max(latencies):.1f} ms "
            f"(target p95 < 50 ms); {found} of {queries} found something"
        )
        embeds: list[float] = []
        for question in asked[10:]:
            start = time.perf_counter()
            embedding.embed_query([question])
            embeds.append((time.perf_counter() - start) * 1000)
        print(
            f"  of which the query embedding: p50 {statistics.median(embeds):.1f} ms, "
            f"p95 {percentile(embeds, 0.95):.1f} ms"
        )

        extra = make_memories(inserts, random.Random(99), users, first_host=hosts_needed + held)  # new hosts
        start = time.perf_counter()
        for item in extra:
            store.add(item.text, kind=item.kind, scope=item.scope, source=item.source)
        single = time.perf_counter() - start
        print(
            f"insert one at a time (embedding + near-duplicate check + write): {inserts / single:,.0f} memories/s "
            f"({single / inserts * 1000:.1f} ms each)"
        )
        total = store.count()

    size = disk_size(path)
    print(f"disk: {size / 1e6:.1f} MB for {total:,} memories ({size / total / 1024:.1f} KiB each) at {path}")
    if keep is None:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"(load average during the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--memories", type=int, default=10_000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--inserts", type=int, default=200)
    parser.add_argument("--keep", type=Path, default=None, help="build the store in DIR and keep it (reused next time)")
    args = parser.parse_args()
    main(args.memories, args.queries, args.inserts, args.keep)
