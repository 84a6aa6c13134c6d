"""Job state: one record per job, kept where every process can see it and outlives any of them.

`SQLiteStore` for the single-process server (a file under --data-dir), `RedisStore` for the
distributed one (API replicas and workers on many machines). Both offer the same operations;
status changes are compare-and-set, so a cancel and a finishing worker can never both win.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Protocol

from fluxai.atomic import atomic_path

PENDING, RUNNING, READY = "Pending", "Running", "Ready"
MODERATED, ERROR, CANCELLED = "Moderated", "Error", "Cancelled"
TERMINAL = frozenset({READY, MODERATED, ERROR, CANCELLED})
STATUSES = (PENDING, RUNNING, READY, MODERATED, ERROR, CANCELLED)
# Latency histogram buckets (seconds) shared by both stores and /metrics.
BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


def new_id() -> str:
    return uuid.uuid4().hex


@dataclass
class Job:
    id: str
    spec: dict[str, Any]  # GenSpec.to_dict()
    model: str
    status: str = PENDING
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    step: int = 0
    steps: int = 0
    preview: str | None = None  # low-res PNG, base64
    files: list[str] = field(default_factory=list)  # file ids, one per image
    parameters: list[dict[str, Any]] = field(default_factory=list)  # one per image
    error: str | None = None
    worker: str | None = None  # host:pid running it
    heartbeat: float | None = None
    cancel_requested: bool = False
    cached: bool = False
    batch_size: int = 0  # jobs that shared its forward pass

    @property
    def progress(self) -> float:
        if self.status == READY:
            return 1.0
        return self.step / self.steps if self.steps else 0.0

    def to_row(self) -> dict[str, str]:
        return {k: json.dumps(v) for k, v in asdict(self).items()}

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Job:
        names = {f.name for f in fields(cls)}
        return cls(**{k: json.loads(v) for k, v in row.items() if k in names})


class JobStore(Protocol):
    def create(self, job: Job, idempotency_key: str | None = None) -> tuple[Job, bool]: ...
    def get(self, job_id: str) -> Job | None: ...
    def update(self, job_id: str, **values: Any) -> None: ...
    def transition(self, job_id: str, allowed: frozenset[str] | set[str], status: str,
                   **values: Any) -> bool: ...
    def ids_with_status(self, *statuses: str) -> list[str]: ...
    def count(self, status: str) -> int: ...
    def cache_get(self, key: str) -> str | None: ...
    def cache_put(self, key: str, job_id: str) -> None: ...
    def put_file(self, file_id: str, data: bytes) -> None: ...
    def get_file(self, file_id: str) -> bytes | None: ...
    def record_finished(self, status: str, latency: float, images: int) -> None: ...
    def bump(self, counter: str, by: int = 1) -> None: ...
    def stats(self) -> dict[str, Any]: ...
    def recent_images(self, window_s: float) -> int: ...
    def ping(self) -> bool: ...


_COLUMNS = [f.name for f in fields(Job)]


class SQLiteStore:
    """One file, WAL mode; a lock serialises this process's threads on one connection."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.files_dir = path.parent / "files"
        self.files_dir.mkdir(exist_ok=True)
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None,
                                   timeout=30)
        self._lock = threading.RLock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            cols = ", ".join(f"{c} TEXT" for c in _COLUMNS if c != "id")
            self._db.execute(f"CREATE TABLE IF NOT EXISTS jobs (id TEXT PRIMARY KEY, {cols})")
            self._db.execute("CREATE INDEX IF NOT EXISTS jobs_status ON jobs(status)")
            self._db.execute("CREATE TABLE IF NOT EXISTS keys (kind TEXT, key TEXT, job TEXT, "
                             "PRIMARY KEY (kind, key))")
            self._db.execute("CREATE TABLE IF NOT EXISTS stats (name TEXT PRIMARY KEY, "
                             "value REAL)")
            self._db.execute("CREATE TABLE IF NOT EXISTS finished (at REAL, images INTEGER)")

    def _exec(self, sql: str, args: tuple[Any, ...] = ()) -> sqlite3.Cursor:
        with self._lock:
            return self._db.execute(sql, args)

    def create(self, job: Job, idempotency_key: str | None = None) -> tuple[Job, bool]:
        row = job.to_row()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                if idempotency_key is not None:
                    hit = self._db.execute("SELECT job FROM keys WHERE kind='idem' AND key=?",
                                           (idempotency_key,)).fetchone()
                    if hit:
                        self._db.execute("COMMIT")
                        existing = self.get(hit[0])
                        if existing is not None:
                            return existing, False
                        self._db.execute("BEGIN IMMEDIATE")
                    self._db.execute("INSERT OR REPLACE INTO keys VALUES ('idem', ?, ?)",
                                     (idempotency_key, job.id))
                marks = ", ".join("?" for _ in _COLUMNS)
                self._db.execute(f"INSERT INTO jobs ({', '.join(_COLUMNS)}) VALUES ({marks})",
                                 tuple(row[c] if c != "id" else job.id for c in _COLUMNS))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return job, True

    def get(self, job_id: str) -> Job | None:
        cur = self._db.cursor()
        with self._lock:
            row = cur.execute(f"SELECT {', '.join(_COLUMNS)} FROM jobs WHERE id=?",
                              (job_id,)).fetchone()
        if row is None:
            return None
        data = dict(zip(_COLUMNS, row, strict=True))
        data["id"] = json.dumps(data["id"])
        return Job.from_row(data)

    def update(self, job_id: str, **values: Any) -> None:
        if values:
            sets = ", ".join(f"{k}=?" for k in values)
            self._exec(f"UPDATE jobs SET {sets} WHERE id=?",
                       (*(json.dumps(v) for v in values.values()), job_id))

    def transition(self, job_id: str, allowed: frozenset[str] | set[str], status: str,
                   **values: Any) -> bool:
        values = {**values, "status": status}
        sets = ", ".join(f"{k}=?" for k in values)
        marks = ", ".join("?" for _ in allowed)
        cur = self._exec(f"UPDATE jobs SET {sets} WHERE id=? AND status IN ({marks})",
                         (*(json.dumps(v) for v in values.values()), job_id,
                          *(json.dumps(s) for s in allowed)))
        return cur.rowcount == 1

    def ids_with_status(self, *statuses: str) -> list[str]:
        marks = ", ".join("?" for _ in statuses)
        rows = self._exec(f"SELECT id, created_at FROM jobs WHERE status IN ({marks}) "
                          "ORDER BY CAST(created_at AS REAL)",
                          tuple(json.dumps(s) for s in statuses)).fetchall()
        return [r[0] for r in rows]

    def count(self, status: str) -> int:
        return self._exec("SELECT COUNT(*) FROM jobs WHERE status=?",
                          (json.dumps(status),)).fetchone()[0]

    def cache_get(self, key: str) -> str | None:
        row = self._exec("SELECT job FROM keys WHERE kind='cache' AND key=?", (key,)).fetchone()
        return row[0] if row else None

    def cache_put(self, key: str, job_id: str) -> None:
        self._exec("INSERT OR REPLACE INTO keys VALUES ('cache', ?, ?)", (key, job_id))

    def put_file(self, file_id: str, data: bytes) -> None:
        with atomic_path(self.files_dir / f"{file_id}.png") as tmp:
            tmp.write_bytes(data)

    def get_file(self, file_id: str) -> bytes | None:
        path = self.files_dir / f"{file_id}.png"
        return path.read_bytes() if path.is_file() else None

    def bump(self, counter: str, by: int = 1) -> None:
        self._exec("INSERT INTO stats VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET "
                   "value = value + excluded.value", (counter, by))

    def record_finished(self, status: str, latency: float, images: int) -> None:
        self.bump(f"jobs_{status}")
        if status == READY:
            self.bump("images", images)
            self.bump("latency_sum", latency)  # type: ignore[arg-type]
            self.bump("latency_count")
            for b in BUCKETS:
                if latency <= b:
                    self.bump(f"latency_le_{b}")
            self._exec("INSERT INTO finished VALUES (?, ?)", (time.time(), images))

    def stats(self) -> dict[str, Any]:
        return dict(self._exec("SELECT name, value FROM stats").fetchall())

    def recent_images(self, window_s: float) -> int:
        since = time.time() - window_s
        self._exec("DELETE FROM finished WHERE at < ?", (since - 3600,))
        row = self._exec("SELECT SUM(images) FROM finished WHERE at >= ?", (since,)).fetchone()
        return int(row[0] or 0)

    def ping(self) -> bool:
        return self._exec("SELECT 1").fetchone() == (1,)


# Compare-and-set in Redis: one script, so no other client sees a half-made change.
_TRANSITION = """
local cur = redis.call('HGET', KEYS[1], 'status')
if not cur then return 0 end
local allowed = cjson.decode(ARGV[1])
local ok = false
for _, s in ipairs(allowed) do if s == cur then ok = true end end
if not ok then return 0 end
for i = 4, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('SREM', ARGV[2] .. 'status:' .. cur, KEYS[1])
local ttl = tonumber(ARGV[3])
if ttl > 0 then
  redis.call('EXPIRE', KEYS[1], ttl)  -- finished: kept as long as its images, then gone
else
  redis.call('SADD', ARGV[2] .. 'status:' .. redis.call('HGET', KEYS[1], 'status'), KEYS[1])
end
return 1
"""


class RedisStore:
    """Jobs as hashes (one JSON value per field, so concurrent updates of different fields
    never overwrite each other), a set per unfinished status (for queue depth), and a time to
    live on files and finished jobs."""

    def __init__(self, url: str, prefix: str = "fluxai:", file_ttl_s: int = 24 * 3600):
        import redis

        self.r = redis.Redis.from_url(url)
        self.p = prefix
        self.file_ttl_s = file_ttl_s
        self._transition = self.r.register_script(_TRANSITION)

    def _key(self, job_id: str) -> str:
        return f"{self.p}job:{job_id}"

    def create(self, job: Job, idempotency_key: str | None = None) -> tuple[Job, bool]:
        if idempotency_key is not None:
            idem = f"{self.p}idem:{idempotency_key}"
            if not self.r.set(idem, job.id, nx=True, ex=24 * 3600):
                existing = self.get(self.r.get(idem).decode())
                if existing is not None:
                    return existing, False
                self.r.set(idem, job.id, ex=24 * 3600)
        pipe = self.r.pipeline()
        pipe.hset(self._key(job.id), mapping=job.to_row())
        if job.status in TERMINAL:  # a cache hit is born finished
            pipe.expire(self._key(job.id), self.file_ttl_s)
        else:
            pipe.sadd(f"{self.p}status:{json.dumps(job.status)}", self._key(job.id))
        pipe.execute()
        return job, True

    def get(self, job_id: str) -> Job | None:
        row = self.r.hgetall(self._key(job_id))
        if not row:
            return None
        return Job.from_row({k.decode(): v.decode() for k, v in row.items()})

    def update(self, job_id: str, **values: Any) -> None:
        # Only existing jobs: a late progress update must not resurrect a deleted record.
        if values and self.r.exists(self._key(job_id)):
            self.r.hset(self._key(job_id),
                        mapping={k: json.dumps(v) for k, v in values.items()})

    def transition(self, job_id: str, allowed: frozenset[str] | set[str], status: str,
                   **values: Any) -> bool:
        values = {**values, "status": status}
        ttl = self.file_ttl_s if status in TERMINAL else 0
        args = [json.dumps([json.dumps(s) for s in allowed]), self.p, ttl]
        for k, v in values.items():
            args += [k, json.dumps(v)]
        return bool(self._transition(keys=[self._key(job_id)], args=args))

    def ids_with_status(self, *statuses: str) -> list[str]:
        keys: set[bytes] = set()
        for s in statuses:
            keys |= self.r.smembers(f"{self.p}status:{json.dumps(s)}")
        return [k.decode().rsplit(":", 1)[1] for k in keys]

    def count(self, status: str) -> int:
        return int(self.r.scard(f"{self.p}status:{json.dumps(status)}"))

    def cache_get(self, key: str) -> str | None:
        v = self.r.get(f"{self.p}cache:{key}")
        return v.decode() if v else None

    def cache_put(self, key: str, job_id: str) -> None:
        self.r.set(f"{self.p}cache:{key}", job_id, ex=self.file_ttl_s)

    def put_file(self, file_id: str, data: bytes) -> None:
        self.r.set(f"{self.p}file:{file_id}", data, ex=self.file_ttl_s)

    def get_file(self, file_id: str) -> bytes | None:
        return self.r.get(f"{self.p}file:{file_id}")

    def bump(self, counter: str, by: float = 1) -> None:
        self.r.hincrbyfloat(f"{self.p}stats", counter, by)

    def record_finished(self, status: str, latency: float, images: int) -> None:
        pipe = self.r.pipeline()
        stats = f"{self.p}stats"
        pipe.hincrbyfloat(stats, f"jobs_{status}", 1)
        if status == READY:
            pipe.hincrbyfloat(stats, "images", images)
            pipe.hincrbyfloat(stats, "latency_sum", latency)
            pipe.hincrbyfloat(stats, "latency_count", 1)
            for b in BUCKETS:
                if latency <= b:
                    pipe.hincrbyfloat(stats, f"latency_le_{b}", 1)
            now = time.time()
            pipe.zadd(f"{self.p}finished", {f"{uuid.uuid4().hex}:{images}": now})
            pipe.zremrangebyscore(f"{self.p}finished", 0, now - 3600)
        pipe.execute()

    def stats(self) -> dict[str, Any]:
        return {k.decode(): float(v) for k, v in self.r.hgetall(f"{self.p}stats").items()}

    def recent_images(self, window_s: float) -> int:
        members = self.r.zrangebyscore(f"{self.p}finished", time.time() - window_s, "+inf")
        return sum(int(m.decode().rsplit(":", 1)[1]) for m in members)

    def ping(self) -> bool:
        try:
            return bool(self.r.ping())
        except Exception:
            return False

    # Workers announce themselves, so readiness can say whether anyone will run the jobs.
    def worker_alive(self, name: str, info: dict[str, Any], ttl_s: int = 15) -> None:
        self.r.set(f"{self.p}worker:{name}", json.dumps(info), ex=ttl_s)

    def workers(self) -> list[dict[str, Any]]:
        keys = list(self.r.scan_iter(f"{self.p}worker:*"))
        values = self.r.mget(keys) if keys else []
        return [json.loads(v) for v in values if v]


def open_store(broker: str | None, data_dir: Path, file_ttl_s: int = 24 * 3600) -> JobStore:
    if broker is None:
        return SQLiteStore(data_dir / "jobs.sqlite")
    if not broker.startswith(("redis://", "rediss://", "unix://")):
        raise ValueError(f"broker {broker!r} is not supported: use redis://host:port/db")
    return RedisStore(broker, file_ttl_s=file_ttl_s)
