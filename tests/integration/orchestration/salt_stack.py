"""A real salt-master, salt-minion and salt-api (rest_cherrypy) on loopback, from `make salt`'s
virtualenv (.vigil/salt-venv), with a temporary config and state tree; sharedsecret eauth."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import REPO, free_port

SALT_BIN = REPO / ".vigil" / "salt-venv" / "bin"
SECRET = "it-salt-shared-secret-0123456789"
USER = "vigil"


@dataclass
class SaltStack:
    url: str
    root: Path
    minion_id: str

    def run(self, lowstate: dict) -> dict:
        """One call through salt-api (for the test's own checks)."""
        body = json.dumps([{**lowstate, "username": USER, "password": SECRET, "eauth": "sharedsecret"}]).encode()
        req = urllib.request.Request(f"{self.url}/run", body, {"Content-Type": "application/json",
                                                               "Accept": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as resp:
            return json.loads(resp.read())


def _config(root: Path, minion_id: str) -> tuple[Path, int]:
    conf, states = root / "conf", root / "srv" / "salt"
    conf.mkdir(parents=True)
    states.mkdir(parents=True)
    publish, ret, api = free_port(), free_port(), free_port()
    (conf / "master").write_text(f"""\
root_dir: {root}/root
user: root
interface: 127.0.0.1
publish_port: {publish}
ret_port: {ret}
auto_accept: true
file_roots:
  base: [{states}]
external_auth:
  sharedsecret:
    {USER}: ['.*']
sharedsecret: "{SECRET}"
netapi_enable_clients: [local]
rest_cherrypy:
  host: 127.0.0.1
  port: {api}
  disable_ssl: true
""")
    (conf / "minion").write_text(f"""\
root_dir: {root}/root
user: root
master: 127.0.0.1
master_port: {ret}
id: {minion_id}
""")
    (states / "hello.sls").write_text(f"""\
hello-file:
  file.managed:
    - name: {root}/hello.txt
    - contents: "hello from salt"
""")
    (states / "broken.sls").write_text(f"""\
cannot-write:
  file.managed:
    - name: {root}/no/such/dir/file.txt
    - makedirs: false
    - contents: "x"
""")
    return conf, api


@contextmanager
def salt_stack(root: Path, minion_id: str = "minion-a", timeout_s: float = 120.0) -> Iterator[SaltStack]:
    """Start the three daemons (each in its own process group), wait until the minion answers
    test.ping through salt-api, and stop them all at the end."""
    conf, port = _config(root, minion_id)
    procs = []
    log = open(root / "daemons.log", "ab")  # noqa: SIM115 - closed below
    try:
        for daemon in ("salt-master", "salt-minion", "salt-api"):
            procs.append(subprocess.Popen([str(SALT_BIN / daemon), "-c", str(conf), "-l", "warning"],
                                          stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                          env={**os.environ, "PATH": f"{SALT_BIN}:{os.environ.get('PATH', '')}"}))
        stack = SaltStack(f"http://127.0.0.1:{port}", root, minion_id)
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                if stack.run({"client": "local", "tgt": minion_id, "fun": "test.ping"})["return"][0].get(minion_id):
                    break
            except (urllib.error.URLError, OSError, ValueError, KeyError, IndexError):
                pass
            dead = [p.args[0] for p in procs if p.poll() is not None]
            if dead or time.monotonic() > deadline:
                raise RuntimeError(f"salt did not come up (exited: {dead}); see {root / 'daemons.log'}")
            time.sleep(1)
        yield stack
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        log.close()
