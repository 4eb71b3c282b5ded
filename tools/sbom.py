"""CycloneDX SBOMs of built images: every Debian package and every Python distribution inside, with purls and licences.

    python3 -m tools.sbom IMAGE [IMAGE...] [--out DIR] [--spec 1.5|1.6]

writes DIR/<repo>_<tag>.cdx.json per image (DIR defaults to build/sbom in the repository) and prints one line per
image: the path, the counts of deb and pypi components and how many of each carry a licence.

How: one `docker run --network none` per image runs tools/sbom_probe.py with the image's own python (the venv's,
first on PATH), which lists what dpkg and importlib.metadata see (see that module). Here the BOM is built with
cyclonedx-python-lib, serialised by its JSON outputter and checked by its strict JSON-schema validator before the
file is written (atomically). Spec 1.5 by default: the Amazon Inspector ScanSbom API takes CycloneDX 1.5.

What scanners read (grype, trivy, Amazon Inspector):
- Debian packages: `pkg:deb/<ID>/<name>@<version>?arch=<arch>&distro=<ID>-<VERSION_ID>` from /etc/os-release,
  version exactly as dpkg has it (epoch included, as the purl spec's deb examples do); when the source package
  differs in name or version, the `upstream=<source>[@<version>]` qualifier (grype matches Debian advisories by
  source package) and trivy's `aquasecurity:trivy:Src*` properties (trivy does the same and takes them from there).
  The packages hang off one operating-system component (debian, /etc/debian_version), the layout trivy needs to
  detect the distribution from a third-party SBOM.
- Python distributions: `pkg:pypi/<PEP 503 normalised name>@<version>`.
- The image itself is metadata.component (type container, version = tag, image id, repo digests and the OCI
  labels as properties; a pkg:oci purl when the image has a registry digest).

Licences: Debian's from /usr/share/doc/<pkg>/copyright (DEP-5 short names mapped to SPDX ids where there is one,
e.g. GPL-2+ -> GPL-2.0-or-later, Expat -> MIT; other names kept as licence names; no copyright file: no
licence). Python's: License-Expression; else License when it is an SPDX id/expression (or a common spelling of
one, "Apache 2.0"); else the `License ::` classifiers (SPDX id where unambiguous, else their name); else a short
License field as a name; else, when the License-File is unmistakably Apache-2.0, MIT or BSD-3-Clause, that id.

Exit status: 0 written; 1 docker not answering, no such image, probe or validation failed; 2 usage.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cyclonedx.model import Property
from cyclonedx.model.bom import Bom
from cyclonedx.model.component import Component, ComponentType
from cyclonedx.model.license import DisjunctiveLicense, LicenseExpression
from cyclonedx.output import make_outputter
from cyclonedx.schema import OutputFormat, SchemaVersion
from cyclonedx.spdx import fixup_id, is_expression
from cyclonedx.validation.json import JsonStrictValidator
from packageurl import PackageURL

try:  # cyclonedx-python-lib >= 11.x moved it; the old location still works with a deprecation warning
    from cyclonedx.contrib.license.factories import LicenseFactory
except ImportError:  # pragma: no cover - older library
    from cyclonedx.factory.license import LicenseFactory

ROOT = Path(__file__).resolve().parents[1]
PROBE = Path(__file__).with_name("sbom_probe.py")
DEFAULT_OUT = ROOT / "build" / "sbom"
SPECS = {"1.5": SchemaVersion.V1_5, "1.6": SchemaVersion.V1_6}
TRIVY = "aquasecurity:trivy:"


class SbomError(Exception):
    """A failure worth one line to the user."""


# ---------------------------------------------------------------------------------------------------- licences
_GNU = re.compile(r"^(AGPL|LGPL|GPL|GFDL-NIV|GFDL)-(\d+(?:\.\d+)?)(\+)?$", re.IGNORECASE)
_DEBIAN_NAMES = {  # DEP-5 short names (and frequent variants) whose SPDX id is not just a case fix
    "expat": "MIT",
    "apache-2": "Apache-2.0",
    "artistic": "Artistic-1.0-Perl",
    "artistic-1": "Artistic-1.0",
    "artistic-2": "Artistic-2.0",
    "perl": "Artistic-1.0-Perl OR GPL-1.0-or-later",
    "psf-2": "PSF-2.0",
    "cc0": "CC0-1.0",
    "zlib/libpng": "Zlib",
    "bsd-2": "BSD-2-Clause",
    "bsd-3": "BSD-3-Clause",
    "bsd-4": "BSD-4-Clause",
}
_EXCEPTIONS = {  # "<licence> with <this>" as DEP-5 files write it -> SPDX exception id
    "autoconf exception": "Autoconf-exception-generic",
    "autoconf-exception": "Autoconf-exception-generic",
    "autoconf-3.0 exception": "Autoconf-exception-3.0",
    "libtool exception": "Libtool-exception",
    "bison exception": "Bison-exception-2.2",
    "bison-2.2 exception": "Bison-exception-2.2",
    "gcc-exception-3.1": "GCC-exception-3.1",
    "gcc runtime library exception": "GCC-exception-3.1",
    "gcc-runtime-library-exception-3.1": "GCC-exception-3.1",
    "classpath exception": "Classpath-exception-2.0",
    "font exception": "Font-exception-2.0",
    "linking exception": "LLVM-exception",
    "texinfo exception": "Texinfo-exception",
    "linux-syscall-note exception": "Linux-syscall-note",
    "linux-syscall-note": "Linux-syscall-note",
}
_GNU_VERSIONS = {"1": "1.0", "2": "2.0", "3": "3.0"}


def _debian_atom(name: str) -> str | None:
    """One DEP-5 licence short name (no and/or) -> SPDX expression, or None."""
    exception = None
    parts = re.split(r"\s+with\s+", name, maxsplit=1, flags=re.IGNORECASE)
    base = parts[0].strip()
    if len(parts) == 2:
        exception = _EXCEPTIONS.get(parts[1].strip().lower())
        if exception is None:
            return None
    spdx: str | None
    gnu = _GNU.match(base)
    if gnu:
        family, version, later = gnu.group(1).upper(), gnu.group(2), gnu.group(3)
        version = _GNU_VERSIONS.get(version, version)
        if family == "GFDL-NIV":
            spdx = f"GFDL-{version}-no-invariants-{'or-later' if later else 'only'}"
        else:
            spdx = f"{family}-{version}-{'or-later' if later else 'only'}"
        spdx = fixup_id(spdx)
    else:
        spdx = _DEBIAN_NAMES.get(base.lower()) or fixup_id(base)
    if spdx is None:
        return None
    if exception:
        if " " in spdx:
            return None
        spdx = f"{spdx} WITH {exception}"
    return spdx


def debian_license_to_spdx(name: str) -> str | None:
    """A DEP-5 `License:` short name -> an SPDX license expression, or None when some part has no SPDX id.

    'GPL-2+' -> 'GPL-2.0-or-later', 'Expat' -> 'MIT', 'GPL-2+ or Artistic' -> 'GPL-2.0-or-later OR
    Artistic-1.0-Perl', 'GPL-3+ with Autoconf exception' -> 'GPL-3.0-or-later WITH Autoconf-exception-generic';
    'public-domain' and mixed and/or without parentheses -> None."""
    name = " ".join(name.split())
    if not name or any(c in name for c in "(),"):
        return None
    tokens = re.split(r"\s+(or|and)\s+", name, flags=re.IGNORECASE)
    atoms, operators = tokens[0::2], {op.upper() for op in tokens[1::2]}
    if len(operators) > 1:
        return None
    mapped = [_debian_atom(atom) for atom in atoms]
    if any(m is None for m in mapped):
        return None
    if len(mapped) == 1:
        expression = mapped[0]
    else:
        expression = f" {operators.pop()} ".join(f"({m})" if " OR " in m or " AND " in m else m for m in mapped)
    return expression if is_expression(expression) else None


_CLASSIFIERS = {  # `License :: ...` classifier leaf -> SPDX id, only where the classifier names one licence
    "MIT License": "MIT",
    "MIT No Attribution License (MIT-0)": "MIT-0",
    "ISC License (ISCL)": "ISC",
    "Mozilla Public License 1.1 (MPL 1.1)": "MPL-1.1",
    "Mozilla Public License 2.0 (MPL 2.0)": "MPL-2.0",
    "Python Software Foundation License": "PSF-2.0",
    "GNU General Public License v2 (GPLv2)": "GPL-2.0-only",
    "GNU General Public License v2 or later (GPLv2+)": "GPL-2.0-or-later",
    "GNU General Public License v3 (GPLv3)": "GPL-3.0-only",
    "GNU General Public License v3 or later (GPLv3+)": "GPL-3.0-or-later",
    "GNU Lesser General Public License v2 (LGPLv2)": "LGPL-2.0-only",
    "GNU Lesser General Public License v2 or later (LGPLv2+)": "LGPL-2.0-or-later",
    "GNU Lesser General Public License v3 (LGPLv3)": "LGPL-3.0-only",
    "GNU Lesser General Public License v3 or later (LGPLv3+)": "LGPL-3.0-or-later",
    "GNU Affero General Public License v3": "AGPL-3.0-only",
    "GNU Affero General Public License v3 or later (AGPLv3+)": "AGPL-3.0-or-later",
    "The Unlicense (Unlicense)": "Unlicense",
    "Universal Permissive License (UPL)": "UPL-1.0",
    "zlib/libpng License": "Zlib",
    "Boost Software License 1.0 (BSL-1.0)": "BSL-1.0",
    "Eclipse Public License 2.0 (EPL-2.0)": "EPL-2.0",
    "Historical Permission Notice and Disclaimer (HPND)": "HPND",
    "CC0 1.0 Universal (CC0 1.0) Public Domain Dedication": "CC0-1.0",
}
_PYTHON_LICENSE_ALIASES = {  # frequent non-SPDX spellings of the License field that name exactly one licence
    "apache 2.0": "Apache-2.0",
    "apache 2": "Apache-2.0",
    "apache license 2.0": "Apache-2.0",
    "apache license, version 2.0": "Apache-2.0",
    "apache software license 2.0": "Apache-2.0",
    "apache-2": "Apache-2.0",
    "mit license": "MIT",
    "the mit license": "MIT",
    "3-clause bsd license": "BSD-3-Clause",
    "bsd 3-clause": "BSD-3-Clause",
    "bsd-3": "BSD-3-Clause",
    "new bsd": "BSD-3-Clause",
    "new bsd license": "BSD-3-Clause",
    "modified bsd": "BSD-3-Clause",
    "bsd 2-clause": "BSD-2-Clause",
    "mpl 2.0": "MPL-2.0",
    "mpl-2": "MPL-2.0",
    "psf": "PSF-2.0",
    "psf license": "PSF-2.0",
}
SHORT_LICENSE = 100  # a License field longer than this (or multi-line) is a licence text, not a name


def _spdx(value: str) -> str | None:
    """value as an SPDX id or expression (case fixed), or None."""
    value = value.strip()
    alias = _PYTHON_LICENSE_ALIASES.get(value.lower())
    if alias:
        return alias
    fixed = fixup_id(value)
    if fixed:
        return fixed
    return value if " " in value and is_expression(value) else None


def python_license_values(dist: dict) -> list[tuple[str, bool]]:
    """(value, is_spdx) pairs for one distribution from the probe, most authoritative source first."""
    expression = (dist.get("license_expression") or "").strip()
    if expression:
        return [(_spdx(expression) or expression, _spdx(expression) is not None)]
    field = (dist.get("license") or "").strip()
    short = bool(field) and "\n" not in field and len(field) <= SHORT_LICENSE and not dist.get("license_truncated")
    if short and _spdx(field):
        return [(_spdx(field), True)]
    leaves = [c.split("::")[-1].strip() for c in dist.get("classifiers") or []]
    leaves = [leaf for leaf in leaves if leaf and leaf not in ("OSI Approved", "Other/Proprietary License")] or [
        leaf for leaf in leaves if leaf
    ]
    if leaves:
        values = [(_CLASSIFIERS[leaf], True) if leaf in _CLASSIFIERS else (leaf, False) for leaf in leaves]
        return list(dict.fromkeys(values))
    if short:
        return [(field, False)]
    recognised = license_from_text(dist.get("license_file_head") or "")
    return [(recognised, True)] if recognised else []


def license_from_text(text: str) -> str | None:
    """The SPDX id of a licence file whose wording is unmistakable (Apache-2.0, MIT, BSD-3-Clause), else None."""
    flat = " ".join(text.split())
    if "Apache License" in flat and "Version 2.0" in flat:
        return "Apache-2.0"
    if "Permission is hereby granted, free of charge, to any person obtaining a copy" in flat:
        return "MIT"
    if "Redistribution and use in source and binary forms" in flat and "Neither the name" in flat:
        return "BSD-3-Clause"
    return None


def license_objects(values: Iterable[tuple[str, bool]]) -> list[DisjunctiveLicense | LicenseExpression]:
    """CycloneDX licences for (value, is_spdx) pairs: SPDX ids and names as a list; compound SPDX expressions as
    one expression (joined with AND) when every value is SPDX, since CycloneDX allows either a list of licences
    or exactly one expression, never both."""
    values = list(dict.fromkeys((v.strip(), s) for v, s in values if v and v.strip()))
    if not values:
        return []
    factory = LicenseFactory()
    compound = [v for v, s in values if s and fixup_id(v) is None]
    if compound and all(s for _, s in values):
        if len(values) == 1:
            return [LicenseExpression(values[0][0])]
        joined = " AND ".join(v if fixup_id(v) else f"({v})" for v, _ in values)
        return [LicenseExpression(joined)]
    licenses: list[DisjunctiveLicense | LicenseExpression] = []
    for value, is_spdx in values:
        spdx_id = fixup_id(value) if is_spdx else None
        licenses.append(factory.make_with_id(spdx_id) if spdx_id else factory.make_with_name(value))
    return licenses


# ---------------------------------------------------------------------------------------------------- purls
def normalize_pypi(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def distro_of(os_release: dict) -> tuple[str, str]:
    """(purl namespace, distro qualifier) from /etc/os-release: ('debian', 'debian-12')."""
    vendor = (os_release.get("ID") or "debian").lower()
    version = os_release.get("VERSION_ID") or os_release.get("VERSION_CODENAME") or ""
    return vendor, f"{vendor}-{version}" if version else vendor


def deb_purl(pkg: dict, namespace: str, distro: str) -> PackageURL:
    qualifiers = {"arch": pkg["arch"], "distro": distro}
    source, source_version = pkg.get("source") or pkg["name"], pkg.get("source_version") or pkg["version"]
    if source != pkg["name"] or source_version != pkg["version"]:
        qualifiers["upstream"] = source if source_version == pkg["version"] else f"{source}@{source_version}"
    return PackageURL(
        type="deb", namespace=namespace, name=pkg["name"].lower(), version=pkg["version"], qualifiers=qualifiers
    )


def pypi_purl(dist: dict) -> PackageURL:
    return PackageURL(type="pypi", name=normalize_pypi(dist["name"]), version=dist["version"])


def _debian_version_parts(version: str) -> tuple[str, str, str]:
    """'1:2.38.1-5+deb12u3' -> ('1', '2.38.1', '5+deb12u3')."""
    epoch, _, rest = version.rpartition(":") if ":" in version else ("", "", version)
    upstream, dash, revision = rest.rpartition("-")
    return epoch, (upstream if dash else rest), (revision if dash else "")


# ---------------------------------------------------------------------------------------------------- the BOM
@dataclass
class ImageRef:
    reference: str  # as given
    repo: str
    tag: str

    @property
    def file_stem(self) -> str:
        return re.sub(r"[^A-Za-z0-9._-]", "_", f"{self.repo}_{self.tag}")


def parse_reference(reference: str) -> ImageRef:
    """'byoc-mxnet-mf:0.1.0-cpu' -> repo byoc-mxnet-mf, tag 0.1.0-cpu; a registry port is not a tag."""
    name, _, digest = reference.partition("@")
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        repo, tag = name.rsplit(":", 1)
    else:
        repo, tag = name, ("sha256-" + digest.split(":")[-1][:12] if digest else "latest")
    return ImageRef(reference, repo, tag)


def _properties(pairs: Iterable[tuple[str, str]]) -> list[Property]:
    return [Property(name=k, value=v) for k, v in pairs if v]


def image_component(ref: ImageRef, inspect: dict) -> Component:
    labels = (inspect.get("Config") or {}).get("Labels") or {}
    digests = inspect.get("RepoDigests") or []
    props = [("byoc:image:id", inspect.get("Id", "")), ("byoc:image:reference", ref.reference)]
    props += [("byoc:image:repo-digest", d) for d in digests]
    props += [("byoc:image:architecture", inspect.get("Architecture", "")), ("byoc:image:os", inspect.get("Os", ""))]
    props += [(k, v) for k, v in sorted(labels.items()) if k.startswith(("org.opencontainers.image.", "byoc."))]
    purl = None
    if digests:
        repository, _, digest = digests[0].partition("@")
        purl = PackageURL(
            type="oci",
            name=repository.rsplit("/", 1)[-1].lower(),
            version=digest,
            qualifiers={
                "repository_url": repository,
                "tag": ref.tag,
                **({"arch": inspect["Architecture"]} if inspect.get("Architecture") else {}),
            },
        )
    return Component(
        type=ComponentType.CONTAINER,
        name=ref.repo,
        version=ref.tag,
        bom_ref=f"image:{ref.reference}",
        purl=purl,
        properties=_properties(props),
        description=labels.get("org.opencontainers.image.description"),
    )


def build_bom(ref: ImageRef, inspect: dict, probe: dict) -> Bom:
    os_release = probe.get("os_release") or {}
    namespace, distro = distro_of(os_release)
    bom = Bom()
    root = image_component(ref, inspect)
    bom.metadata.component = root
    bom.metadata.tools.components.add(
        Component(type=ComponentType.APPLICATION, name="byoc-sbom", group="byoc-sagemaker", version=_version())
    )
    used_refs: set[str] = set()

    def unique(ref_value: str) -> str:
        candidate, n = ref_value, 1
        while candidate in used_refs:
            n += 1
            candidate = f"{ref_value}#{n}"
        used_refs.add(candidate)
        return candidate

    os_component = Component(
        type=ComponentType.OPERATING_SYSTEM,
        name=namespace,
        version=probe.get("debian_version") or os_release.get("VERSION_ID") or None,
        description=os_release.get("PRETTY_NAME"),
        bom_ref=unique(f"os:{distro}"),
    )
    debs = []
    for pkg in sorted(probe.get("deb") or [], key=lambda p: (p["name"], p["arch"])):
        purl = deb_purl(pkg, namespace, distro)
        epoch, upstream, revision = _debian_version_parts(pkg.get("source_version") or pkg["version"])
        props = [
            ("byoc:deb:source", pkg.get("source", "")),
            ("byoc:deb:source-version", pkg.get("source_version", "")),
            (TRIVY + "SrcName", pkg.get("source", "")),
            (TRIVY + "SrcVersion", upstream),
            (TRIVY + "SrcRelease", revision),
            (TRIVY + "SrcEpoch", epoch if epoch not in ("", "0") else ""),
            (
                "byoc:deb:copyright-from",
                pkg.get("copyright") if pkg.get("copyright") not in (None, pkg["name"]) else "",
            ),
        ]
        licenses = [(debian_license_to_spdx(n) or n, debian_license_to_spdx(n) is not None) for n in pkg["licenses"]]
        debs.append(
            Component(
                type=ComponentType.LIBRARY,
                name=pkg["name"],
                version=pkg["version"],
                purl=purl,
                bom_ref=unique(str(purl)),
                licenses=license_objects(licenses),
                properties=_properties(props),
            )
        )
    pythons = []
    for dist in sorted(probe.get("python") or [], key=lambda d: (normalize_pypi(d["name"]), d["version"], d["path"])):
        purl = pypi_purl(dist)
        pythons.append(
            Component(
                type=ComponentType.LIBRARY,
                name=dist["name"],
                version=dist["version"],
                purl=purl,
                bom_ref=unique(str(purl)),
                licenses=license_objects(python_license_values(dist)),
                properties=_properties([("byoc:python:path", dist.get("path", ""))]),
            )
        )
    bom.components.add(os_component)
    for component in debs + pythons:
        bom.components.add(component)
    bom.register_dependency(root, [os_component, *pythons])
    bom.register_dependency(os_component, debs)
    for component in debs + pythons:
        bom.register_dependency(component, [])
    return bom


def serialize(bom: Bom, spec: SchemaVersion = SchemaVersion.V1_5) -> str:
    """The BOM as CycloneDX JSON, checked against the schema; SbomError if it does not validate."""
    text = make_outputter(bom, OutputFormat.JSON, spec).output_as_string(indent=2)
    error = JsonStrictValidator(spec).validate_str(text)
    if error is not None:
        raise SbomError(f"the generated BOM does not validate against CycloneDX {spec.to_version()}: {error}")
    return text


# ---------------------------------------------------------------------------------------------------- docker
def _version() -> str:
    try:
        return (ROOT / "VERSION").read_text().strip()
    except OSError:
        return "0"


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def docker_ready() -> None:
    if shutil.which("docker") is None:
        raise SbomError("docker is not installed (no `docker` on PATH)")
    try:
        result = subprocess.run(
            ["docker", "version", "--format", "{{.Server.Version}}"], capture_output=True, text=True, timeout=60
        )
    except subprocess.TimeoutExpired:
        raise SbomError("docker is not answering (`docker version` took more than 60 s)") from None
    if result.returncode != 0:
        raise SbomError(f"docker is not answering: {_last_line(result.stderr)}")


def inspect_image(reference: str) -> dict:
    result = subprocess.run(["docker", "image", "inspect", reference], capture_output=True, text=True)
    if result.returncode != 0:
        if "no such image" in result.stderr.lower() or "not found" in result.stderr.lower():
            raise SbomError(f"no such image: {reference} (build it first, e.g. ./build.sh build)")
        raise SbomError(f"docker image inspect {reference} failed: {_last_line(result.stderr)}")
    return json.loads(result.stdout)[0]


def run_probe(reference: str) -> dict:
    """Runs sbom_probe.py inside the image (no network, removed afterwards); falls back to python3."""
    source = PROBE.read_text()
    result = None
    for python in ("python", "python3"):
        result = subprocess.run(
            [
                "docker",
                "run",
                "--rm",
                "-i",
                "--network",
                "none",
                "--pull",
                "never",
                "--entrypoint",
                python,
                reference,
                "-",
            ],
            input=source,
            capture_output=True,
            text=True,
        )
        if result.returncode not in (126, 127):  # the image has no such executable: try the next
            break
    if result.returncode != 0:
        raise SbomError(f"the probe failed in {reference} (exit {result.returncode}): {_last_line(result.stderr)}")
    try:
        return json.loads(result.stdout)
    except json.JSONDecodeError as e:
        raise SbomError(f"the probe in {reference} printed no JSON ({e})") from None


def write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@dataclass
class Result:
    path: Path
    deb: int
    pypi: int
    deb_licensed: int
    pypi_licensed: int

    def line(self) -> str:
        try:
            shown = self.path.relative_to(Path.cwd())
        except ValueError:
            shown = self.path
        return (
            f"{shown}: {self.deb} deb, {self.pypi} pypi "
            f"(licence known: deb {self.deb_licensed}/{self.deb}, pypi {self.pypi_licensed}/{self.pypi})"
        )


def sbom_for(reference: str, out_dir: Path, spec: SchemaVersion = SchemaVersion.V1_5) -> Result:
    ref = parse_reference(reference)
    inspect = inspect_image(reference)
    probe = run_probe(reference)
    bom = build_bom(ref, inspect, probe)
    text = serialize(bom, spec)
    path = out_dir / f"{ref.file_stem}.cdx.json"
    write_atomically(path, text)
    debs = [c for c in bom.components if c.purl is not None and c.purl.type == "deb"]
    pypis = [c for c in bom.components if c.purl is not None and c.purl.type == "pypi"]
    return Result(path, len(debs), len(pypis), sum(1 for c in debs if c.licenses), sum(1 for c in pypis if c.licenses))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m tools.sbom", description=__doc__.splitlines()[0])
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="local image, e.g. byoc-mxnet-mf:0.1.0-cpu")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output directory (default: build/sbom)")
    parser.add_argument("--spec", choices=sorted(SPECS), default="1.5", help="CycloneDX version (default 1.5)")
    args = parser.parse_args(argv)
    try:
        docker_ready()
        for reference in args.images:  # all present before anything is written
            inspect_image(reference)
        for reference in args.images:
            print(sbom_for(reference, args.out.resolve(), SPECS[args.spec]).line(), flush=True)
    except SbomError as e:
        print(f"sbom: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
