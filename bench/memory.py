"""Memory at 10,000 memories: recall latency beside its floor, insert throughput, disk size.

Real embedded Chroma and the real offline model (USE multilingual v3 with multilingual-e5-small;
`--embedding use` for USE alone, `--embedding minilm` for all-MiniLM-L6-v2), as the bot runs
them by default.  The store is built with `add_many` (one embedding batch and one write per
128 memories, each item still checked for near-duplicates), then:

- recall: one question at a time about the stored hosts and services, as the agent asks
  before each request (query embedding included), scopes [shared, one user's private], k=6,
  identifier leeway on.  Beside it, in the same run and on the same collection, the floor:
  the same query embedding and one bare `collection.query` with the same k, alternating
  with the recalls.  Targets: p50 <= 1.3x the floor, p95 <= 50 ms.  Also printed: how many
  Chroma queries a recall made, and how often the memory about the asked host came first.
- insert: one `add` at a time (embedding + near-duplicate check + write), as memory_store does.
- disk: the size of the Chroma directory.
- quality, on the labelled set of the tests (tests/core/memory/data/recall_labelled.json: 30
  facts in English and French, paraphrases, cross-language questions, unrelated questions):
  a store holding only those facts is asked each question as the agent asks it (k=6,
  identifier leeway on, the store's cut-off).  Per language pair: how often the right fact
  comes first (targets: >= 95 % within a language, >= 90 % across English/French) and how
  often an unrelated question returns nothing (target >= 95 %).  `--quality-only` skips the
  10k part.  `--calibrate` also fits the recall cut-off on the set's "fit" questions (only
  those in `--languages`, default en,fr) and scores the held-out "check" ones at it.

With `--keep DIR` the store stays in DIR and a later run with the same DIR measures again
without rebuilding it (the inserts of each run are added on top, about new hosts).

    .venv/bin/python bench/memory.py [--memories 10000] [--queries 300] [--inserts 200] [--keep DIR]
                                     [--quality-only] [--calibrate] [--languages en,fr]
                                     [--embedding offline|use|minilm|ollama] [--embed-model bge-m3]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import chromadb
from chromadb.api.models.Collection import Collection
from chromadb.config import Settings

from core.memory.embeddings import embedding_from_settings, shared_offline_embedding
from core.memory.store import DEFAULT_COLLECTION, SHARED_SCOPE, MemoryStore, NewMemory, private_scope

K = 6
TARGET_RATIO = 1.3
TARGET_P95_MS = 50.0
LABELLED_SET = Path(__file__).resolve().parents[1] / "tests" / "core" / "memory" / "data" / "recall_labelled.json"
TARGET_WITHIN = 0.95  # right fact first, question and fact in one language
TARGET_ACROSS = 0.90  # right fact first, English question -> French fact and back
TARGET_NOTHING = 0.95  # unrelated questions that return nothing

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


def host_names(count: int, *, first: int = 0) -> list[str]:
    """web1, db1, cache1, …, k8s1, web2, …: the hosts ``count`` memories are about."""
    return [f"{ROLES[i % len(ROLES)]}{i // len(ROLES) + 1}" for i in range(first, first + count)]


def hosts_for(memories: int) -> int:
    return memories // len(TEMPLATES) + 1


def make_memories(n: int, rng: random.Random, users: list[str], *, first_host: int = 0) -> list[NewMemory]:
    """``n`` distinct facts: each template once per host, so none is a near-duplicate of another."""
    hosts = host_names(hosts_for(n), first=first_host)
    items: list[NewMemory] = []
    for i in range(n):
        template = TEMPLATES[i % len(TEMPLATES)]
        h = hosts[i // len(TEMPLATES)]
        text = template.format(
            h=h, h2=rng.choice(hosts), p=rng.randrange(1024, 65000), g=rng.choice([4, 8, 16, 32, 64, 128]),
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


def figures(values: list[float]) -> str:
    return f"p50 {statistics.median(values):5.1f} ms, p95 {percentile(values, 0.95):5.1f} ms"


def verdict(met: bool) -> str:
    return "met" if met else "MISSED"


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load {one:.2f} / {five:.2f} / {fifteen:.2f} on {os.cpu_count()} cores"


class QueryCounter:
    """Counts the Chroma queries made while :meth:`counting` is open (the floor's own are not)."""

    def __init__(self) -> None:
        self.made = 0
        self._open = False
        query = Collection.query

        def counted(collection: Collection, *args: Any, **kwargs: Any) -> Any:
            self.made += self._open
            return query(collection, *args, **kwargs)

        Collection.query = counted  # type: ignore[method-assign, assignment]

    @contextmanager
    def counting(self) -> Iterator[None]:
        self._open = True
        try:
            yield
        finally:
            self._open = False


class RecallRun:
    """Recalls through the store and their floor on the same collection, side by side."""

    def __init__(self, store: MemoryStore, collection: Collection, counter: QueryCounter) -> None:
        self.store, self.collection, self.counter = store, collection, counter
        self.recalls: list[float] = []
        self.floors: list[float] = []
        self.embeds: list[float] = []
        self.bare: list[float] = []
        self.made: list[int] = []
        self.found = self.first = self.about_a_host = self.naming = 0

    def recall(self, question: str, scopes: list[str], about: str | None) -> None:
        before = self.counter.made
        start = time.perf_counter()
        with self.counter.counting():
            hits = self.store.recall(question, scopes=scopes, k=K, identifier_leeway=True)
        self.recalls.append((time.perf_counter() - start) * 1000)
        self.made.append(self.counter.made - before)
        self.found += bool(hits)
        if about is not None:
            names = re.compile(rf"\b{re.escape(about)}\b")
            self.about_a_host += 1
            self.first += bool(hits) and bool(names.search(hits[0].text))
            self.naming += sum(bool(names.search(hit.text)) for hit in hits)

    def floor(self, question: str) -> None:
        start = time.perf_counter()
        vector = self.store.embedding.embed_query([question])[0]
        embedded = time.perf_counter()
        self.collection.query(query_embeddings=[vector], n_results=K)
        end = time.perf_counter()
        self.floors.append((end - start) * 1000)
        self.embeds.append((embedded - start) * 1000)
        self.bare.append((end - embedded) * 1000)

    def report(self, held: int, queries: int) -> None:
        ratio = statistics.median(self.recalls) / statistics.median(self.floors)
        p95 = percentile(self.recalls, 0.95)
        second = sum(m > 1 for m in self.made)
        print(f"recall over {held:,} memories, {queries} questions, k={K}, query embedding included ({load()}):")
        tail = f"p99 {percentile(self.recalls, 0.99):.1f} ms, max {max(self.recalls):.1f} ms"
        print(f"  recall  {figures(self.recalls)}, {tail}")
        print(f"  floor   {figures(self.floors)}  (the query embedding and one bare collection.query, k={K})")
        print(f"    of which the embedding {figures(self.embeds)}, the bare query {figures(self.bare)}")
        print(
            f"  p50 {ratio:.2f}x the floor (target <= {TARGET_RATIO}x: {verdict(ratio <= TARGET_RATIO)}), "
            f"p95 {p95:.1f} ms (target <= {TARGET_P95_MS:.0f} ms: {verdict(p95 <= TARGET_P95_MS)})"
        )
        print(
            f"  Chroma queries per recall: {statistics.mean(self.made):.2f} ({second} of {queries} made a second); "
            f"{self.found} of {queries} found something; "
            f"a memory naming the asked host first in {self.first} of {self.about_a_host} "
            f"(and {self.naming / max(self.about_a_host, 1):.1f} of the {K} on average)"
        )


def raw_collection(path: Path) -> Collection:
    """The store's collection opened directly, as the floor queries it."""
    client = chromadb.PersistentClient(path=str(path), settings=Settings(anonymized_telemetry=False))
    return client.get_collection(DEFAULT_COLLECTION, embedding_function=None)


def judge(
    store: MemoryStore, queries: list[dict[str, Any]], facts: dict[str, str], cut: float
) -> dict[str, list[bool]]:
    """Per language pair, whether each question got its right fact first (or nothing, when unrelated) at ``cut``."""
    hits: dict[str, list[bool]] = {}
    for query in queries:
        found = store.recall(query["text"], scopes=[SHARED_SCOPE], k=K, identifier_leeway=True, max_distance=cut)
        wanted = store_text(facts[query["fact"]]) if query["fact"] is not None else None
        ok = not found if wanted is None else bool(found) and found[0].text == wanted
        hits.setdefault(query["pair"], []).append(ok)
    return hits


def target_of(pair: str) -> tuple[str, float]:
    if "-" not in pair:
        return f"unrelated questions ({pair}) return nothing", TARGET_NOTHING
    asked, stored = pair.split("-")
    return f"right fact first, {pair}", TARGET_WITHIN if asked == stored else TARGET_ACROSS


def fit_cut(store: MemoryStore, queries: list[dict[str, Any]], facts: dict[str, str]) -> tuple[float, float, float]:
    """The cut-off that gets the most questions of ``queries`` right: the middle of the widest best interval."""
    grid = [round(0.30 + 0.005 * n, 3) for n in range(int((0.98 - 0.30) / 0.005) + 1)]
    scores = [sum(sum(oks) for oks in judge(store, queries, facts, cut).values()) for cut in grid]
    best = max(scores)
    runs: list[tuple[int, int]] = []
    for n, score in enumerate(scores):
        if score == best:
            if runs and runs[-1][1] == n - 1:
                runs[-1] = (runs[-1][0], n)
            else:
                runs.append((n, n))
    first, last = max(runs, key=lambda run: run[1] - run[0])
    return round((grid[first] + grid[last]) / 2, 3), grid[first], grid[last]


def quality(embedding: Any, *, calibrate: bool = False, languages: frozenset[str] = frozenset({"en", "fr"})) -> None:
    """Right fact first per language pair, and unrelated questions that return nothing, on the labelled set.

    With ``calibrate``: the cut-off fitted on the "fit" questions, and the figures of the
    "check" questions (which the fit did not see) at it.  Only questions and facts in
    ``languages`` are fitted on (an English-only model is calibrated on English).
    """
    labelled = json.loads(LABELLED_SET.read_text(encoding="utf-8"))
    facts: dict[str, str] = labelled["facts"]
    queries: list[dict[str, Any]] = labelled["queries"]
    tmp = Path(tempfile.mkdtemp(prefix="orch-bench-quality-"))
    try:
        with MemoryStore(tmp / "memory", embedding=embedding) as store:
            store.add_many([NewMemory(text, kind="fact", scope=SHARED_SCOPE) for text in facts.values()])
            shipped = store.recall_distance
            print(
                f"quality of {embedding.model_name} on the labelled set ({len(facts)} facts, {len(queries)} questions, "
                f"cut-off {shipped:.3f}{'' if embedding.thresholds.calibrated else ', not calibrated'}):"
            )
            report(judge(store, queries, facts, shipped))
            if calibrate:
                spoken = [q for q in queries if set(q["pair"].split("-")) <= languages]
                fit = [q for q in spoken if q.get("split", "fit") == "fit"]
                check = [q for q in spoken if q.get("split") == "check"]
                cut, low, high = fit_cut(store, fit, facts)
                print(
                    f"calibration: fitted on {len(fit)} questions in {'/'.join(sorted(languages))}, "
                    f"the best cut-off is {cut:.3f} "
                    f"(every cut-off from {low:.3f} to {high:.3f} scores the same); the engine ships {shipped:.3f}"
                )
                print(f"  the {len(check)} held-out questions at the fitted cut-off {cut:.3f}:")
                report(judge(store, check, facts, cut), indent="    ")
                distances(store, queries, facts)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def report(hits: dict[str, list[bool]], indent: str = "  ") -> None:
    for pair, oks in hits.items():
        label, target = target_of(pair)
        rate = sum(oks) / len(oks)
        print(f"{indent}{label}: {sum(oks)}/{len(oks)} = {rate:.0%} (target >= {target:.0%}) {verdict(rate >= target)}")


def distances(store: MemoryStore, queries: list[dict[str, Any]], facts: dict[str, str]) -> None:
    """Where the right facts and the nearest memory of unrelated questions lie, as the thresholds' comments quote."""
    right: list[float] = []
    unrelated: list[float] = []
    for query in queries:
        found = store.recall(query["text"], scopes=[SHARED_SCOPE], k=len(facts), max_distance=1.99)
        if query["fact"] is None:
            unrelated.append(min(m.distance or 2.0 for m in found))
        else:
            wanted = store_text(facts[query["fact"]])
            right += [m.distance or 0.0 for m in found if m.text == wanted]
    print(
        f"  distances: the right fact {min(right):.2f}-{max(right):.2f} (p90 {percentile(right, 0.9):.2f}); "
        f"the nearest memory of an unrelated question {min(unrelated):.2f}-{max(unrelated):.2f}"
    )


def store_text(text: str) -> str:
    """How the store keeps a fact's text (the same preparation as `add_many`)."""
    return text.strip()


def main(memories: int, queries: int, inserts: int, keep: Path | None) -> None:
    rng = random.Random(7)
    users = [f"U{n:03d}" for n in range(50)]
    tmp = keep or Path(tempfile.mkdtemp(prefix="orch-bench-memory-"))
    path = tmp / "memory"
    embedding = shared_offline_embedding()
    embedding(["warm up"])
    items = make_memories(memories, rng, users)
    counter = QueryCounter()

    with MemoryStore(path, embedding=embedding) as store:
        if keep is not None and store.count():  # --keep DIR from an earlier run: measure again without rebuilding
            held = store.count()
            print(f"reusing the {held:,} memories at {path}")
        else:
            start = time.perf_counter()
            store.add_many(items, batch_size=128)
            built = time.perf_counter() - start
            held = store.count()
            print(f"built {held:,} memories with add_many in {built:.1f} s ({held / built:,.0f} memories/s)")

        collection = raw_collection(path)
        hosts = host_names(hosts_for(memories))
        asked: list[tuple[str, str | None]] = []
        for _ in range(queries + 10):
            template, named = rng.choice(QUESTIONS), rng.choice(hosts)
            asked.append((template.format(h=named, svc=rng.choice(SERVICES)), named if "{h}" in template else None))
        run = RecallRun(store, collection, counter)
        for n, (question, about) in enumerate(asked):
            scopes = [SHARED_SCOPE, private_scope("bench", rng.choice(users))]
            if n % 2:  # alternate, so that neither side always runs with a warmer cache
                run.recall(question, scopes, about)
                run.floor(question)
            else:
                run.floor(question)
                run.recall(question, scopes, about)
            if n == 9:  # warm-up excluded
                run = RecallRun(store, collection, counter)
        run.report(held, queries)

        extra = make_memories(inserts, random.Random(99), users, first_host=hosts_for(memories) + held)  # new hosts
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
    print(f"(at the end of the run: {load()})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--memories", type=int, default=10_000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--inserts", type=int, default=200)
    parser.add_argument("--keep", type=Path, default=None, help="build the store in DIR and keep it (reused next time)")
    parser.add_argument("--quality-only", action="store_true", help="only the labelled-set quality figures")
    parser.add_argument("--embedding", default="offline", help="quality of this engine: offline, minilm or ollama")
    parser.add_argument("--calibrate", action="store_true", help="fit the recall cut-off on the labelled set")
    parser.add_argument("--languages", default="en,fr", help="with --calibrate: fit on these languages only")
    parser.add_argument("--embed-model", default="", help="with --embedding ollama, e.g. bge-m3")
    parser.add_argument("--ollama-host", default=os.environ.get("OLLAMA_HOST", "http://127.0.0.1:11434"))
    args = parser.parse_args()
    if not args.quality_only:
        main(args.memories, args.queries, args.inserts, args.keep)
    quality(
        embedding_from_settings(args.embedding, ollama_host=args.ollama_host, model=args.embed_model),
        calibrate=args.calibrate,
        languages=frozenset(args.languages.split(",")),
    )
