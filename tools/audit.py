"""Known-vulnerability audit of the pinned Python requirements (lock files), with an allow-list that needs reasons.

    python3 -m tools.audit [LOCK...] [--allow security/audit-allow.toml] [--from-json FILE...] [--service pypi|osv]

LOCKs default to containers/base/locks/*.txt and containers/*/requirements.lock (`uv pip compile
--generate-hashes` outputs). Each is checked with
    pip-audit -r LOCK --require-hashes --disable-pip --format json --progress-spinner off
(nothing is installed or resolved: the lock is taken as it is). --from-json reads a recorded pip-audit JSON output
(either pip-audit 2.x's {"dependencies": [...]} or the older top-level list) instead of running pip-audit.

Prints one row per advisory (package, version, advisory id and aliases, fixed in, status, locks) and a summary:
- allowed:  matched by an [[allow]] entry of the allow-list (by id or alias, and package when the entry names one);
- FIXABLE:  a fixed version exists and no entry allows it: the run fails;
- no fix:   no fixed version exists: reported, does not fail (it belongs in security/RISKS.md).

Allow-list (TOML, read with tomllib):
    [[allow]]
    id = "PYSEC-2023-62"          # or any alias: CVE-..., GHSA-...
    package = "flask"             # optional: only for this package
    reason = "why it does not apply / what mitigates it"   # required, non-empty
    expires = 2026-06-30          # optional: the entry stops applying after this date

The advisory services pip-audit asks (PyPI's JSON API, OSV) may be unreachable (as from the build network of this
project): pip-audit then either fails with a connection error or reports every package as "not found on PyPI".
Either way this tool says so in one line and exits 3: nothing was checked, which is not a pass.

Exit status:
    0  no advisory that fails the run (none, or all allowed or without a fix)
    1  at least one FIXABLE advisory, neither taken (fixed version locked) nor allowed
    2  usage or other error (no lock files, bad allow-list, an entry without a reason, pip-audit failed otherwise)
    3  the advisory service could not be reached: nothing was checked
"""

from __future__ import annotations

import argparse
import datetime
import json
import re
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_ALLOW = ROOT / "security" / "audit-allow.toml"
EXIT_OK, EXIT_FIXABLE, EXIT_ERROR, EXIT_UNREACHABLE = 0, 1, 2, 3
ALLOW_KEYS = {"id", "package", "reason", "expires"}
NETWORK_ERRORS = re.compile(
    r"ConnectionError|ProxyError|NameResolutionError|Max retries exceeded|Failed to resolve|Connection refused|"
    r"ConnectTimeout|ReadTimeout|timed out|SSLError|Temporary failure in name resolution|Network is unreachable|"
    r"Could not connect"
)
NOT_FOUND = re.compile(r"not found on PyPI", re.IGNORECASE)


class AuditError(Exception):
    """Exit 2 with this one line."""


class Unreachable(Exception):
    """Exit 3 with this one line."""


@dataclass(frozen=True)
class Advisory:
    package: str
    version: str
    id: str
    aliases: tuple[str, ...]
    fix_versions: tuple[str, ...]
    description: str = ""


@dataclass(frozen=True)
class AllowEntry:
    id: str
    reason: str
    package: str | None = None
    expires: datetime.date | None = None

    def matches(self, advisory: Advisory) -> bool:
        ids = {advisory.id.upper(), *(a.upper() for a in advisory.aliases)}
        if self.id.upper() not in ids:
            return False
        return self.package is None or normalize(self.package) == normalize(advisory.package)


@dataclass
class Row:
    advisory: Advisory
    status: str  # "allowed" | "FIXABLE" | "no fix"
    locks: list[str] = field(default_factory=list)
    allowed_by: AllowEntry | None = None


@dataclass
class LockResult:
    name: str
    advisories: list[Advisory]
    checked: int  # dependencies pip-audit looked up
    skipped: list[str]  # dependencies it could not check ("name (reason)")


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


# ---------------------------------------------------------------------------------------------------- allow-list
def load_allow(path: Path, required: bool) -> list[AllowEntry]:
    """The allow-list's entries; AuditError (exit 2) for a missing required file, bad TOML or a bad entry."""
    if not path.exists():
        if required:
            raise AuditError(f"{path}: no such allow-list")
        return []
    try:
        data = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise AuditError(f"{path}: not valid TOML: {e}") from None
    unknown = set(data) - {"allow"}
    if unknown:
        raise AuditError(f"{path}: unknown top-level key(s) {sorted(unknown)}; entries are [[allow]] tables")
    entries = data.get("allow", [])
    if not isinstance(entries, list):
        raise AuditError(f"{path}: `allow` must be an array of tables ([[allow]])")
    result = []
    for n, entry in enumerate(entries, 1):
        label = f"{path}: [[allow]] entry {n}" + (f" (id = {entry.get('id')!r})" if isinstance(entry, dict) else "")
        if not isinstance(entry, dict):
            raise AuditError(f"{label} is not a table")
        extra = set(entry) - ALLOW_KEYS
        if extra:
            raise AuditError(f"{label} has unknown key(s) {sorted(extra)}; allowed: {sorted(ALLOW_KEYS)}")
        advisory_id = entry.get("id")
        if not isinstance(advisory_id, str) or not advisory_id.strip():
            raise AuditError(f"{label} has no id")
        reason = entry.get("reason")
        if not isinstance(reason, str) or not reason.strip():
            raise AuditError(f"{label} has no reason; every allowed advisory needs one")
        package = entry.get("package")
        if package is not None and (not isinstance(package, str) or not package.strip()):
            raise AuditError(f"{label}: package must be a non-empty string")
        expires = entry.get("expires")
        if expires is not None and not (
            isinstance(expires, datetime.date) and not isinstance(expires, datetime.datetime)
        ):
            raise AuditError(f"{label}: expires must be a date (expires = 2026-06-30)")
        result.append(AllowEntry(advisory_id.strip(), reason.strip(), package.strip() if package else None, expires))
    return result


# ---------------------------------------------------------------------------------------------------- pip-audit
def parse_report(data: object, name: str, service: str = "pypi") -> LockResult:
    """pip-audit's JSON (2.x dict or the older list) -> LockResult; Unreachable when every package was 'not found'."""
    if isinstance(data, dict):
        dependencies = data.get("dependencies")
    else:
        dependencies = data
    if not isinstance(dependencies, list):
        raise AuditError(f"{name}: not a pip-audit JSON report (no dependency list)")
    advisories, skipped, checked = [], [], 0
    for dep in dependencies:
        if not isinstance(dep, dict) or "name" not in dep:
            raise AuditError(f"{name}: not a pip-audit JSON report (a dependency without a name)")
        if dep.get("skip_reason"):
            skipped.append(f"{dep['name']} ({dep['skip_reason']})")
            continue
        checked += 1
        for vuln in dep.get("vulns") or []:
            advisories.append(
                Advisory(
                    package=dep["name"],
                    version=str(dep.get("version", "")),
                    id=str(vuln["id"]),
                    aliases=tuple(str(a) for a in vuln.get("aliases") or ()),
                    fix_versions=tuple(str(v) for v in vuln.get("fix_versions") or ()),
                    description=str(vuln.get("description") or ""),
                )
            )
    not_found = [s for s in skipped if NOT_FOUND.search(s)]
    if dependencies and checked == 0 and len(not_found) == len(skipped):
        raise Unreachable(
            f"cannot reach the advisory service ({service}): every package in {name} ({len(skipped)}) came back "
            "'not found on PyPI' (its vulnerability data is not served here); nothing was checked"
        )
    return LockResult(name, advisories, checked, skipped)


def network_reason(stderr: str) -> str:
    """A short reason from a pip-audit traceback: 'ProxyError talking to pypi.org: Unable to connect to proxy'."""
    lines = [line.strip() for line in stderr.splitlines() if NETWORK_ERRORS.search(line)]
    line = lines[-1] if lines else stderr.strip().splitlines()[-1]
    kind = re.match(r"(?:[\w.]+\.)?(\w+(?:Error|Exception|Timeout))\b", line)
    host = re.search(r"host='([^']+)'", line)
    cause = re.search(
        r"Failed to resolve '[^']+'|Connection refused|Unable to connect to proxy|timed out|"
        r"Network is unreachable|Temporary failure in name resolution|certificate verify failed",
        line,
    )
    parts = [kind.group(1) if kind else "connection error"]
    if host:
        parts.append(f"talking to {host.group(1)}")
    reason = " ".join(parts) + (f": {cause.group(0)}" if cause else "")
    return reason[:200]


def run_pip_audit(lock: Path, service: str = "pypi", env: dict | None = None) -> LockResult:
    exe = shutil.which("pip-audit")
    command = [exe] if exe else [sys.executable, "-m", "pip_audit"]
    command += [
        "-r",
        str(lock),
        "--require-hashes",
        "--disable-pip",
        "--format",
        "json",
        "--progress-spinner",
        "off",
        "--vulnerability-service",
        service,
    ]
    try:
        result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)
    except FileNotFoundError:
        raise AuditError("pip-audit is not installed (pip install 'pip-audit>=2.7')") from None
    except subprocess.TimeoutExpired:
        raise Unreachable(
            f"cannot reach the advisory service ({service}): pip-audit took more than 900 s; nothing was checked"
        ) from None
    data = None
    if result.stdout.strip():
        try:
            data = json.loads(result.stdout)
        except json.JSONDecodeError:
            data = None
    if data is None or result.returncode not in (0, 1):
        if NETWORK_ERRORS.search(result.stderr):
            raise Unreachable(
                f"cannot reach the advisory service ({service}): {network_reason(result.stderr)}; nothing was checked"
            )
        if "No module named pip_audit" in result.stderr:
            raise AuditError("pip-audit is not installed (pip install 'pip-audit>=2.7')")
        last = [line for line in result.stderr.strip().splitlines() if line.strip()]
        raise AuditError(
            f"pip-audit failed on {display(lock)} (exit {result.returncode}): "
            f"{last[-1].strip() if last else 'no output'}"
        )
    return parse_report(data, display(lock), service)


def default_locks() -> list[Path]:
    return sorted((ROOT / "containers" / "base" / "locks").glob("*.txt")) + sorted(
        (ROOT / "containers").glob("*/requirements.lock")
    )


def display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


# ---------------------------------------------------------------------------------------------------- report
def classify(results: list[LockResult], allow: list[AllowEntry], today: datetime.date | None = None) -> list[Row]:
    """One row per (package, version, advisory) across all locks, with its status."""
    today = today or datetime.date.today()
    rows: dict[tuple[str, str, str], Row] = {}
    for result in results:
        for advisory in result.advisories:
            key = (normalize(advisory.package), advisory.version, advisory.id)
            if key in rows:
                if result.name not in rows[key].locks:
                    rows[key].locks.append(result.name)
                continue
            entry = next((e for e in allow if e.matches(advisory) and (e.expires is None or e.expires >= today)), None)
            if entry is not None:
                status = "allowed"
            elif advisory.fix_versions:
                status = "FIXABLE"
            else:
                status = "no fix"
            rows[key] = Row(advisory, status, [result.name], entry)
    order = {"FIXABLE": 0, "no fix": 1, "allowed": 2}
    return sorted(rows.values(), key=lambda r: (order[r.status], normalize(r.advisory.package), r.advisory.id))


def table(rows: list[Row]) -> str:
    header = ("package", "version", "advisory", "fixed in", "status", "locks")
    lines = [header]
    for row in rows:
        a = row.advisory
        advisory = a.id + (f" ({', '.join(a.aliases)})" if a.aliases else "")
        lines.append(
            (a.package, a.version, advisory, ", ".join(a.fix_versions) or "-", row.status, ", ".join(row.locks))
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = ["  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip() for line in lines]
    out.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(out)


def summary(results: list[LockResult], rows: list[Row]) -> str:
    counts = {s: sum(1 for r in rows if r.status == s) for s in ("FIXABLE", "allowed", "no fix")}
    checked = sum(r.checked for r in results)
    skipped = sum(len(r.skipped) for r in results)
    verdict = "FAIL" if counts["FIXABLE"] else "ok"
    text = (
        f"audit: {verdict}: {len(results)} lock(s), {checked} dependencies checked, {len(rows)} advisories: "
        f"{counts['FIXABLE']} FIXABLE, {counts['allowed']} allowed, {counts['no fix']} no fix"
    )
    if skipped:
        text += f"; {skipped} not checked"
    return text


def report(results: list[LockResult], allow: list[AllowEntry], today: datetime.date | None = None) -> tuple[str, int]:
    """(text to print, exit status) for audited locks."""
    rows = classify(results, allow, today)
    parts = []
    if rows:
        parts.append(table(rows))
    for result in results:
        for skipped in result.skipped:
            parts.append(f"not checked in {result.name}: {skipped}")
    used = {id(r.allowed_by) for r in rows if r.allowed_by}
    today = today or datetime.date.today()
    for entry in allow:
        if entry.expires is not None and entry.expires < today:
            parts.append(f"note: allow entry {entry.id} expired on {entry.expires.isoformat()}")
        elif id(entry) not in used:
            parts.append(f"note: allow entry {entry.id} matched nothing (fixed? then remove it)")
    parts.append(summary(results, rows))
    return "\n".join(parts), EXIT_FIXABLE if any(r.status == "FIXABLE" for r in rows) else EXIT_OK


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python3 -m tools.audit",
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="exit status: 0 ok, 1 FIXABLE advisory, 2 error, 3 advisory service unreachable",
    )
    parser.add_argument(
        "locks",
        nargs="*",
        type=Path,
        metavar="LOCK",
        help="hashed requirement files (default: containers/base/locks/*.txt, containers/*/requirements.lock)",
    )
    parser.add_argument("--allow", type=Path, help="allow-list (default: security/audit-allow.toml)")
    parser.add_argument(
        "--from-json",
        type=Path,
        action="append",
        metavar="FILE",
        help="a recorded pip-audit JSON report instead of running pip-audit (repeatable)",
    )
    parser.add_argument(
        "--service", choices=("pypi", "osv"), default="pypi", help="advisory service pip-audit asks (default: pypi)"
    )
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        return EXIT_ERROR if e.code else EXIT_OK
    try:
        allow = load_allow(args.allow or DEFAULT_ALLOW, required=args.allow is not None)
        results = []
        if args.from_json:
            for path in args.from_json:
                try:
                    data = json.loads(path.read_text())
                except (OSError, json.JSONDecodeError) as e:
                    raise AuditError(f"{path}: cannot read a JSON report: {e}") from None
                results.append(parse_report(data, display(path), args.service))
        else:
            locks = args.locks or default_locks()
            if not locks:
                raise AuditError(
                    "no lock files (looked for containers/base/locks/*.txt and containers/*/requirements.lock)"
                )
            for lock in locks:
                if not lock.is_file():
                    raise AuditError(f"{lock}: no such lock file")
                results.append(run_pip_audit(lock, args.service))
    except AuditError as e:
        print(f"audit: {e}", file=sys.stderr)
        return EXIT_ERROR
    except Unreachable as e:
        print(f"audit: {e}", file=sys.stderr)
        return EXIT_UNREACHABLE
    text, status = report(results, allow)
    print(text)
    return status


if __name__ == "__main__":
    sys.exit(main())
