"""Pure parsers, one module per source: bytes or decoded data in, events out (ParseError if not)."""

from app.bridges.errors import ParseError
from app.bridges.parsers._common import ParseResult, TypedRecord
from app.bridges.parsers.alertmanager import parse_alertmanager
from app.bridges.parsers.github import parse_github, verify_github_signature
from app.bridges.parsers.nagios import parse_nagios
from app.bridges.parsers.perfdata import parse_perfdata
from app.bridges.parsers.puppet import parse_puppet_report
from app.bridges.parsers.syslog import parse_syslog
from app.bridges.parsers.syslog_framing import FrameError, SyslogFrameDecoder
from app.bridges.parsers.vigil_json import parse_vigil_json

__all__ = [
    "FrameError",
    "ParseError",
    "ParseResult",
    "SyslogFrameDecoder",
    "TypedRecord",
    "parse_alertmanager",
    "parse_github",
    "parse_nagios",
    "parse_perfdata",
    "parse_puppet_report",
    "parse_syslog",
    "parse_vigil_json",
    "verify_github_signature",
]
