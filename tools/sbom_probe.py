"""What tools.sbom runs inside an image: prints one JSON object describing what is installed there.

    docker run --rm -i --network none --entrypoint python IMAGE - < tools/sbom_probe.py

Standard library only (it runs under the image's own Python, 3.8 or newer), read-only, no network. It reports
raw facts; mapping licence names to SPDX and making purls happens on the host (tools/sbom.py):
- "deb": every package dpkg lists as installed (status "ii"): name, version, architecture, source package and
  version, and the licence names of /usr/share/doc/<pkg>/copyright (the DEP-5 `License:` short names; for a
  copyright file that is not machine-readable, the /usr/share/common-licenses/<name> it points to) or, when
  that file is missing, of another installed binary of the same source package ("copyright" names the package
  whose file was read). No copyright file at all gives no licence, not an error.
- "python": every distribution importlib.metadata finds on this interpreter's sys.path (so PYTHONPATH too) and
  in the system interpreter's site directories: name, version, License-Expression, License (first 500
  characters), the `License ::` classifiers, the directory it was found in, and for a distribution whose
  metadata names no licence at all, the start of its License-File.
- "os_release" (/etc/os-release as a dict) and "debian_version".
"""

from __future__ import annotations

import glob
import json
import os
import re
import subprocess
import sys

DPKG_FORMAT = (
    "${db:Status-Abbrev}\\t${Package}\\t${Version}\\t${Architecture}\\t${source:Package}\\t${source:Version}\\n"
)
COMMON_LICENSE = re.compile(r"/usr/share/common-licenses/([A-Za-z0-9][A-Za-z0-9.+_-]*)")
LICENSE_TEXT_LIMIT = 500
LICENSE_FILE_HEAD = 3000
SYSTEM_SITE_GLOBS = (
    "/usr/lib/python3/dist-packages",
    "/usr/local/lib/python3*/dist-packages",
    "/usr/local/lib/python3*/site-packages",
)


def read_text(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return None


def os_release(text: str | None) -> dict[str, str]:
    values = {}
    for line in (text or "").splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() and not key.startswith("#"):
            values[key.strip()] = value.strip().strip('"').strip("'")
    return values


def copyright_licenses(text: str | None) -> list[str]:
    """Licence short names a Debian copyright file declares, in order of first appearance, without repeats.

    DEP-5 (machine-readable) files: the first line of every `License:` field (header, Files and stand-alone
    License paragraphs). Other files: the /usr/share/common-licenses/<name> they refer to."""
    if not text:
        return []
    names: list[str] = []
    first = text.lstrip().split("\n", 1)[0]
    if re.match(r"(?i)format(-specification)?\s*:", first):
        for line in text.splitlines():
            match = re.match(r"(?i)license\s*:(.*)$", line)
            if match:
                names.append(match.group(1).strip())
    else:
        names = [name.rstrip(".") for name in COMMON_LICENSE.findall(text)]
    seen: set[str] = set()
    return [n for n in names if n and not (n in seen or seen.add(n))]


def deb_packages() -> list[dict]:
    try:
        out = subprocess.run(["dpkg-query", "-W", "-f", DPKG_FORMAT], capture_output=True, text=True, check=False)
    except OSError:
        return []
    packages = []
    for line in out.stdout.splitlines():
        fields = line.split("\t")
        if len(fields) != 6 or fields[0][1:2] != "i":  # installed (ii, or hi when held)
            continue
        _, name, version, arch, source, source_version = fields
        copyright_text = read_text(f"/usr/share/doc/{name}/copyright")
        packages.append(
            {
                "name": name,
                "version": version,
                "arch": arch,
                "source": source or name,
                "source_version": source_version or version,
                "copyright": name if copyright_text is not None else None,
                "licenses": copyright_licenses(copyright_text),
            }
        )
    # debian/copyright is per source package: a binary package whose doc directory is a symlink that is gone
    # (libgcc-s1 -> gcc-12-base) has the same file as another binary of its source package.
    by_source = {}
    for pkg in packages:
        if pkg["copyright"]:
            by_source.setdefault((pkg["source"], pkg["source_version"]), pkg)
    for pkg in packages:
        sibling = by_source.get((pkg["source"], pkg["source_version"]))
        if not pkg["copyright"] and sibling:
            pkg["copyright"], pkg["licenses"] = sibling["copyright"], list(sibling["licenses"])
    return packages


def license_file_head(dist, meta) -> str:
    """The start of the first License-File, only for a distribution whose metadata names no licence at all."""
    if (
        meta.get("License-Expression")
        or meta.get("License")
        or any(c.startswith("License ::") for c in (meta.get_all("Classifier") or []))
    ):
        return ""
    for name in meta.get_all("License-File") or []:
        for candidate in (f"licenses/{name}", name):
            try:
                text = dist.read_text(candidate)
            except (OSError, ValueError):
                text = None
            if text:
                return text[:LICENSE_FILE_HEAD]
    return ""


def python_dists() -> list[dict]:
    from importlib import metadata

    cwd = os.getcwd()
    search = [p for p in sys.path if p and os.path.isdir(p) and os.path.abspath(p) != cwd]
    for pattern in SYSTEM_SITE_GLOBS:
        search += [p for p in sorted(glob.glob(pattern)) if p not in search]
    found, seen = [], set()
    for directory in search:
        for dist in metadata.distributions(path=[directory]):
            meta = dist.metadata
            name = meta["Name"] if meta else None
            if not name:
                continue
            key = (re.sub(r"[-_.]+", "-", name).lower(), dist.version, os.path.realpath(directory))
            if key in seen:
                continue
            seen.add(key)
            license_text = meta.get("License") or ""
            found.append(
                {
                    "name": name,
                    "version": dist.version,
                    "path": directory,
                    "license_expression": (meta.get("License-Expression") or "").strip(),
                    "license": license_text[:LICENSE_TEXT_LIMIT],
                    "license_truncated": len(license_text) > LICENSE_TEXT_LIMIT,
                    "classifiers": [c for c in (meta.get_all("Classifier") or []) if c.startswith("License ::")],
                    "license_file_head": license_file_head(dist, meta),
                }
            )
    return found


def main() -> None:
    debian_version = (read_text("/etc/debian_version") or "").strip()
    json.dump(
        {
            "os_release": os_release(read_text("/etc/os-release") or read_text("/usr/lib/os-release")),
            "debian_version": debian_version,
            "python_executable": sys.executable,
            "python_version": ".".join(map(str, sys.version_info[:3])),
            "deb": deb_packages(),
            "python": python_dists(),
        },
        sys.stdout,
    )


if __name__ == "__main__":
    main()
