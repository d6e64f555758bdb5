"""What hack/check-knative.py and hack/check-eventing.py share: reading a Knative component's log, stopping it.

The scripts run as `python hack/check-*.py` (also re-run by themselves under `unshare --net`), so this
folder is sys.path[0] and they import this module by its name.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path


def error_lines(log: Path) -> list[str]:
    """The error-level entries of a Knative component's log (zap JSON lines), and any panic/fatal text line."""
    lines = []
    for line in log.read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            if "panic" in line or "fatal" in line.lower():
                lines.append(line[:300])
            continue
        if str(entry.get("severity", entry.get("level", ""))).upper() in ("ERROR", "FATAL", "PANIC", "DPANIC"):
            lines.append(f"{entry.get('logger', '')}: {entry.get('message', entry.get('msg', ''))}"
                         f"{' (' + str(entry['error'])[:200] + ')' if 'error' in entry else ''}")
    return lines


def stop(process: subprocess.Popen) -> int | None:
    """Terminate the process (kill it after 15 s); its exit status if it had already exited, else None."""
    early = process.poll()
    if early is None:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return early
