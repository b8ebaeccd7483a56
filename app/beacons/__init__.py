"""Beacons: small checks run on a host at an interval that emit events when something changes.

Public API for plugin authors and tests: `beacon` (the decorator), `Beacon`, `BeaconContext`,
`Reading`, `Thresholds`. The runner, publisher and spool live in their own modules.
"""

from app.beacons.base import Beacon, BeaconContext, Reading, Thresholds
from app.beacons.registry import BeaconDefinition, beacon

__all__ = ["Beacon", "BeaconContext", "BeaconDefinition", "Reading", "Thresholds", "beacon"]
