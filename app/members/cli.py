"""`vigil members [--json]`: hosts seen through heartbeats, alive or failed (heartbeat expired)."""

from __future__ import annotations

import time

import click

from app.members.model import HEARTBEAT, member_from_status
from app.pipeline.cli import fetch_statuses, show_items, worker_option
from app.web.client import api_option

__all__ = ["members_command"]


@click.command("members")
@click.option("--json", "as_json", is_flag=True, help="one JSON object per line")
@worker_option
@api_option
def members_command(as_json: bool, workers: tuple[str, ...], api_url: str | None) -> None:
    """Hosts seen through heartbeats with their tags and state (alive, or failed when the heartbeat expired)."""
    now = int(time.time() * 1000)
    statuses = fetch_statuses(workers, subject="*", name=HEARTBEAT, api_url=api_url)
    show_items([member_from_status(s).model_dump(mode="json") for s in statuses],
               as_json=as_json,
               empty="no hosts have sent heartbeats (is `vigil beacon run` running with the heartbeat beacon?)",
               headers=["HOST", "STATE", "LAST HEARTBEAT", "TAGS"],
               row=lambda m: [m["host"], str(m["state"]).lower(), f"{(now - m['last_seen']) // 1000}s ago",
                              ",".join(f"{k}={v}" for k, v in sorted(m["tags"].items()))])
