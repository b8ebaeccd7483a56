"""Backtests from the UI: `POST /backtests` queues a run of the backtest (app.backtest) over a range of
recorded events with a posted rule set (or the deployed one), compared with the deployed rules;
`GET /backtests/{id}` follows it and returns its firings and the difference.

One run at a time, in a thread, with a short queue (a full queue answers 429); finished runs are
kept as JSON files under the UI's data directory (the last `keep`), so they survive a restart.
Posted rule files are written to a directory of their own and checked before anything is read:
a broken rule is a 400 listing every `file:line: problem`.
"""

from __future__ import annotations

import logging
import queue
import re
import shutil
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import orjson

from app.backtest.report import summary_json
from app.backtest.run import BacktestRequest, run_backtest
from app.backtest.times import TimeRange
from app.config import Settings
from app.model.ids import new_id
from app.rules.loader import load_rules
from app.web.params import ParamError

__all__ = ["BacktestBusy", "BacktestJobs", "RulesRejected", "deployed_rule_files"]

log = logging.getLogger(__name__)

_FILE_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,100}\.ya?ml")
MAX_FILES: Final = 50
MAX_FILE_BYTES: Final = 256 * 1024
#: Would-be actions returned with a finished run (all are counted; the summary covers all).
MAX_FIRINGS: Final = 2000


class BacktestBusy(Exception):
    """The queue is full; try again when a run has finished."""


class RulesRejected(Exception):
    """Posted rules have errors: `errors` lists them as `file:line: message`."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__(f"{len(errors)} error(s) in the posted rules")
        self.errors = errors


def deployed_rule_files(rules_dir: Path) -> dict[str, str]:
    """The deployed rule files by name (what the backtest page starts editing from)."""
    if not rules_dir.is_dir():
        return {}
    out = {}
    for path in sorted(rules_dir.iterdir()):
        if path.is_file() and _FILE_NAME.fullmatch(path.name) and path.stat().st_size <= MAX_FILE_BYTES:
            out[path.name] = path.read_text(errors="replace")
    return out


@dataclass
class BacktestJob:
    """One queued, running or finished backtest."""

    id: str
    request: dict[str, Any]
    rules_dirs: list[Path]
    state: str = "queued"
    created_ms: int = field(default_factory=lambda: int(time.time() * 1000))
    progress: dict[str, Any] = field(default_factory=lambda: {"records": 0, "total": None, "position": None})
    result: dict[str, Any] | None = None
    error: str | None = None

    def to_json(self, *, with_result: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "state": self.state, "created": self.created_ms,
                               "request": self.request, "progress": self.progress, "error": self.error}
        if with_result:
            out["result"] = self.result
        return out


class _Progress:
    """app.backtest's Progress protocol, written into the job (read by GET /backtests/{id})."""

    def __init__(self, job: BacktestJob) -> None:
        self.job = job

    def begin(self, total: int) -> None:
        self.job.progress = {**self.job.progress, "total": total}

    def update(self, records: int, position_ms: int | None) -> None:
        self.job.progress = {**self.job.progress, "records": records, "position": position_ms}


def check_rule_files(files: Mapping[str, Any]) -> dict[str, str]:
    """Posted rule files, name -> YAML text, checked for safe names and sizes (ParamError)."""
    if not isinstance(files, Mapping) or not files:
        raise ParamError("files", "expected an object of file name -> YAML text, e.g. {\"load.yaml\": \"rules: ...\"}")
    if len(files) > MAX_FILES:
        raise ParamError("files", f"at most {MAX_FILES} files")
    out: dict[str, str] = {}
    for name, text in files.items():
        if not isinstance(name, str) or not _FILE_NAME.fullmatch(name):
            raise ParamError("files", f"{name!r}: a file name is letters, digits, '.', '_' or '-' ending in .yaml")
        if not isinstance(text, str):
            raise ParamError("files", f"{name}: the content must be a string of YAML")
        if len(text.encode()) > MAX_FILE_BYTES:
            raise ParamError("files", f"{name}: larger than {MAX_FILE_BYTES // 1024} KiB")
        out[name] = text
    return out


class BacktestJobs:
    """The queue, the runner thread and the finished runs."""

    def __init__(self, settings: Settings, *, deployed_dir: Path, work_dir: Path, max_range_ms: int,
                 max_queued: int = 4, keep: int = 50) -> None:
        self.settings = settings
        self.deployed_dir = deployed_dir
        self.work_dir = work_dir
        self.max_range_ms = max_range_ms
        self.keep = keep
        self._jobs: dict[str, BacktestJob] = {}
        self._queue: queue.Queue[BacktestJob | None] = queue.Queue(maxsize=max_queued)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._load_finished()

    # -- submitting -------------------------------------------------------------------------------------
    def submit(self, *, from_ms: int, to_ms: int, files: Mapping[str, Any] | None, subject: str | None,
               compare: bool) -> BacktestJob:
        """Check and queue a backtest (ParamError, RulesRejected, BacktestBusy)."""
        if to_ms <= from_ms:
            raise ParamError("to", "must be after from")
        if to_ms - from_ms > self.max_range_ms:
            raise ParamError("to", f"the range is longer than the {self.max_range_ms // 3_600_000} h a backtest "
                                   "may read here (ui.backtest_max_range)")
        job_id = new_id()
        posted = check_rule_files(files) if files is not None else None
        dirs: list[Path] = []
        if posted is None or compare:
            if not self.deployed_dir.is_dir():
                raise ParamError("files", f"there are no deployed rules to compare with ({self.deployed_dir} is "
                                          "not a directory): post a rule set")
            dirs.append(self.deployed_dir)
        if posted is not None:
            rules_dir = self.work_dir / job_id / "rules"
            rules_dir.mkdir(parents=True, exist_ok=True)
            for name, text in posted.items():
                (rules_dir / name).write_text(text)
            errors = [str(e).replace(str(rules_dir) + "/", "") for e in load_rules(rules_dir)[1]]
            if errors:
                shutil.rmtree(self.work_dir / job_id, ignore_errors=True)
                raise RulesRejected(errors)
            dirs.append(rules_dir)
        request = {"from": from_ms, "to": to_ms, "subject": subject, "compare": len(dirs) == 2,
                   "rulesets": ["deployed" if d == self.deployed_dir else "posted" for d in dirs],
                   "files": sorted(posted) if posted is not None else None}
        job = BacktestJob(job_id, request, dirs)
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            shutil.rmtree(self.work_dir / job_id, ignore_errors=True)
            raise BacktestBusy(f"{self._queue.maxsize} backtests are already waiting; try again later") from None
        with self._lock:
            self._jobs[job_id] = job
        self._start()
        return job

    def get(self, job_id: str) -> BacktestJob | None:
        with self._lock:
            return self._jobs.get(job_id)

    def list(self) -> list[BacktestJob]:
        with self._lock:
            return sorted(self._jobs.values(), key=lambda j: j.created_ms, reverse=True)

    # -- running ----------------------------------------------------------------------------------------
    def _start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="vigil-ui-backtests", daemon=True)
            self._thread.start()

    def close(self) -> None:
        if self._thread is not None:
            try:
                self._queue.put_nowait(None)
            except queue.Full:
                pass
            self._thread.join(5)

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            job.state = "running"
            try:
                job.result = self._backtest(job)
                job.state = "done"
            except Exception as exc:  # a run that fails must not stop the runner
                log.exception("ui: backtest %s failed", job.id)
                job.state, job.error = "failed", f"{type(exc).__name__}: {exc}"
            self._save(job)

    def _backtest(self, job: BacktestJob) -> dict[str, Any]:
        request = BacktestRequest(rules_dirs=tuple(job.rules_dirs),
                                  time_range=TimeRange(job.request["from"], job.request["to"]),
                                  subject=job.request["subject"], processes=1,
                                  tune_gc=False)  # the server's process: its collector left as it is
        result = run_backtest(self.settings, request, progress=_Progress(job))
        rulesets = len(job.rules_dirs)
        ids = [{a.id for a in result.actions if a.ruleset == r} for r in range(rulesets)]
        firings = []
        for action in result.actions:
            if rulesets == 2:
                other = ids[1 - action.ruleset]
                side = "both" if action.id in other else ("a" if action.ruleset == 0 else "b")
                if side == "both" and action.ruleset == 0:
                    continue  # listed once, under B
            else:
                side = "a"
            firings.append({**action.to_json(), "side": side})
        return {"read": result.read, "filtered": result.filtered, "unreadable": result.unreadable,
                "partitions": result.partitions, "elapsed_s": round(result.elapsed_s, 3),
                "no_data": result.no_data, "events": result.counts.events, "alerts": result.counts.alerts,
                "rulesets": job.request["rulesets"], "summary": summary_json(result.actions, rulesets),
                "firings_total": len(firings), "firings": firings[:MAX_FIRINGS]}

    # -- keeping finished runs --------------------------------------------------------------------------
    def _save(self, job: BacktestJob) -> None:
        try:
            self.work_dir.mkdir(parents=True, exist_ok=True)
            (self.work_dir / f"{job.id}.json").write_bytes(orjson.dumps(job.to_json()))
            shutil.rmtree(self.work_dir / job.id, ignore_errors=True)
        except OSError as exc:
            log.warning("ui: cannot keep backtest %s: %s", job.id, exc)
        with self._lock:
            finished = sorted((j for j in self._jobs.values() if j.state in ("done", "failed")),
                              key=lambda j: j.created_ms)
            for old in finished[:-self.keep] if len(finished) > self.keep else []:
                self._jobs.pop(old.id, None)
                (self.work_dir / f"{old.id}.json").unlink(missing_ok=True)

    def _load_finished(self) -> None:
        if not self.work_dir.is_dir():
            return
        for path in sorted(self.work_dir.glob("*.json")):
            try:
                data = orjson.loads(path.read_bytes())
                job = BacktestJob(data["id"], data["request"], [], state=data["state"],
                                  created_ms=data["created"], progress=data.get("progress") or {},
                                  result=data.get("result"), error=data.get("error"))
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.warning("ui: ignoring unreadable backtest file %s: %s", path, exc)
                continue
            self._jobs[job.id] = job
