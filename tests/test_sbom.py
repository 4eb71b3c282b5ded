"""tools.sbom: licence mapping, purls and a schema-valid BOM (no docker); then, per image, an SBOM that lists what
dpkg and pip show inside it (docker)."""

from __future__ import annotations

import json
import re
import subprocess

import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from packageurl import PackageURL

from tests.images import build_image
from tools import sbom, sbom_probe

DEP5 = """\
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: bash
Source: https://ftp.gnu.org/gnu/bash/

Files: *
Copyright: 1987-2022 Free Software Foundation, Inc.
License: GPL-3+

Files: lib/sh/inet_aton.c
Copyright: 1983, 1990, 1993 The Regents of the University of California.
License: BSD-4-clause-UC

Files: examples/loadables/*
Copyright: 1996-2022 Free Software Foundation, Inc.
License: GPL-2+ or Artistic

License: GPL-3+
 This program is free software; you can redistribute it and/or modify
 it under the terms of the GNU General Public License ...
 .
 On Debian systems, the complete text of the GNU General Public License
 version 3 can be found in `/usr/share/common-licenses/GPL-3'.
"""

FREE_FORM = """\
This is the Debian GNU/Linux prepackaged version of zlib.
Upstream license: see /usr/share/common-licenses/Zlib and /usr/share/common-licenses/GPL-2.
"""


# ------------------------------------------------------------------------------------------ licences (no docker)
def test_copyright_file_license_names():
    assert sbom_probe.copyright_licenses(DEP5) == ["GPL-3+", "BSD-4-clause-UC", "GPL-2+ or Artistic"]
    assert sbom_probe.copyright_licenses(FREE_FORM) == ["Zlib", "GPL-2"]
    assert sbom_probe.copyright_licenses(None) == [] and sbom_probe.copyright_licenses("") == []


@pytest.mark.parametrize(
    ("debian", "spdx"),
    [
        ("GPL-2+", "GPL-2.0-or-later"),
        ("GPL-2", "GPL-2.0-only"),
        ("LGPL-2.1+", "LGPL-2.1-or-later"),
        ("LGPL-2", "LGPL-2.0-only"),
        ("GPL-3+", "GPL-3.0-or-later"),
        ("AGPL-3+", "AGPL-3.0-or-later"),
        ("GFDL-NIV-1.3+", "GFDL-1.3-no-invariants-or-later"),
        ("Expat", "MIT"),
        ("BSD-3-clause", "BSD-3-Clause"),
        ("zlib", "Zlib"),
        ("Apache-2.0", "Apache-2.0"),
        ("Artistic", "Artistic-1.0-Perl"),
        ("GPL-2+ or Artistic", "GPL-2.0-or-later OR Artistic-1.0-Perl"),
        ("LGPL-2.1+ and GPL-2+", "LGPL-2.1-or-later AND GPL-2.0-or-later"),
        ("GPL-3+ with Autoconf exception", "GPL-3.0-or-later WITH Autoconf-exception-generic"),
        ("GPL-3+ with Bison exception", "GPL-3.0-or-later WITH Bison-exception-2.2"),
        ("public-domain", None),
        ("GPL", None),  # no version: ambiguous, kept as a name
        ("GPL-1+ or Artistic, and Expat", None),  # DEP-5 comma precedence: kept as a name
        ("MIT-like", None),
    ],
)
def test_debian_license_names_to_spdx(debian, spdx):
    assert sbom.debian_license_to_spdx(debian) == spdx


@pytest.mark.parametrize(
    ("dist", "expected"),
    [
        (
            {"license_expression": "Apache-2.0 OR BSD-2-Clause", "license": "ignored"},
            [("Apache-2.0 OR BSD-2-Clause", True)],
        ),
        (
            {"license": "Apache 2.0", "classifiers": ["License :: OSI Approved :: Apache Software License"]},
            [("Apache-2.0", True)],
        ),
        ({"license": "mit"}, [("MIT", True)]),
        (
            {
                "license": "Dual License",
                "classifiers": [
                    "License :: OSI Approved :: BSD License",
                    "License :: OSI Approved :: Apache Software License",
                ],
            },
            [("BSD License", False), ("Apache Software License", False)],
        ),
        ({"classifiers": ["License :: OSI Approved :: MIT License"]}, [("MIT", True)]),
        ({"license": "Some Custom Licence"}, [("Some Custom Licence", False)]),
        ({"license": "x" * 400}, []),
        (
            {"license_file_head": "Copyright 2023 someone\n\nLicensed under the Apache License, Version 2.0 (the"},
            [("Apache-2.0", True)],
        ),
        ({}, []),
    ],
)
def test_python_license_choice(dist, expected):
    assert sbom.python_license_values(dist) == expected


def test_licenses_never_mix_a_list_and_an_expression():
    simple = sbom.license_objects([("MIT", True), ("public-domain", False), ("MIT", True)])
    assert [(getattr(x, "id", None), getattr(x, "name", None)) for x in simple] == [
        ("MIT", None),
        (None, "public-domain"),
    ]
    combined = sbom.license_objects([("GPL-2.0-or-later OR Artistic-1.0-Perl", True), ("MIT", True)])
    assert len(combined) == 1 and combined[0].value == "(GPL-2.0-or-later OR Artistic-1.0-Perl) AND MIT"
    mixed = sbom.license_objects([("GPL-2.0-or-later OR Artistic-1.0-Perl", True), ("MIT-like", False)])
    assert [x.name for x in mixed] == ["GPL-2.0-or-later OR Artistic-1.0-Perl", "MIT-like"]


# ---------------------------------------------------------------------------------- purls and the BOM (no docker)
def test_deb_purl_keeps_the_epoch_and_names_the_source_package():
    pkg = {
        "name": "bsdutils",
        "version": "1:2.38.1-5+deb12u3",
        "arch": "amd64",
        "source": "util-linux",
        "source_version": "2.38.1-5+deb12u3",
    }
    purl = sbom.deb_purl(pkg, "debian", "debian-12")
    assert str(purl) == (
        "pkg:deb/debian/bsdutils@1:2.38.1-5%2Bdeb12u3?arch=amd64&distro=debian-12"
        "&upstream=util-linux%402.38.1-5%2Bdeb12u3"
    )
    assert PackageURL.from_string(str(purl)).version == "1:2.38.1-5+deb12u3"
    same = {"name": "adduser", "version": "3.134", "arch": "all", "source": "adduser", "source_version": "3.134"}
    assert str(sbom.deb_purl(same, "debian", "debian-12")) == "pkg:deb/debian/adduser@3.134?arch=all&distro=debian-12"


def test_pypi_purl_normalises_the_name_not_the_version():
    assert (
        str(sbom.pypi_purl({"name": "Typing_Extensions", "version": "4.12.2"})) == "pkg:pypi/typing-extensions@4.12.2"
    )
    assert (
        str(sbom.pypi_purl({"name": "zope.interface", "version": "7.0.post1"})) == "pkg:pypi/zope-interface@7.0.post1"
    )


@pytest.mark.parametrize(
    ("reference", "repo", "tag", "stem"),
    [
        ("byoc-mxnet-mf:0.1.0-cpu", "byoc-mxnet-mf", "0.1.0-cpu", "byoc-mxnet-mf_0.1.0-cpu"),
        ("127.0.0.1:5000/byoc-fm:0.1.0-gpu", "127.0.0.1:5000/byoc-fm", "0.1.0-gpu", "127.0.0.1_5000_byoc-fm_0.1.0-gpu"),
        ("byoc-fm", "byoc-fm", "latest", "byoc-fm_latest"),
    ],
)
def test_image_references(reference, repo, tag, stem):
    ref = sbom.parse_reference(reference)
    assert (ref.repo, ref.tag, ref.file_stem) == (repo, tag, stem)


def synthetic_probe() -> dict:
    return {
        "os_release": {"ID": "debian", "VERSION_ID": "12", "PRETTY_NAME": "Debian GNU/Linux 12 (bookworm)"},
        "debian_version": "12.15",
        "deb": [
            {
                "name": "bash",
                "version": "5.2.15-2+b13",
                "arch": "amd64",
                "source": "bash",
                "source_version": "5.2.15-2",
                "copyright": "bash",
                "licenses": ["GPL-3+", "BSD-4-clause-UC", "GPL-2+ or Artistic"],
            },
            {
                "name": "libc6",
                "version": "2.36-9+deb12u13",
                "arch": "amd64",
                "source": "glibc",
                "source_version": "2.36-9+deb12u13",
                "copyright": None,
                "licenses": [],
            },
            {
                "name": "libc6",
                "version": "2.36-9+deb12u13",
                "arch": "i386",
                "source": "glibc",
                "source_version": "2.36-9+deb12u13",
                "copyright": None,
                "licenses": [],
            },
        ],
        "python": [
            {
                "name": "Flask",
                "version": "3.1.3",
                "path": "/opt/venv/lib/python3.11/site-packages",
                "license_expression": "BSD-3-Clause",
                "license": "",
                "classifiers": [],
            },
            {
                "name": "six",
                "version": "1.17.0",
                "path": "/opt/venv/lib/python3.11/site-packages",
                "license_expression": "",
                "license": "MIT",
                "classifiers": [],
            },
            {
                "name": "six",
                "version": "1.17.0",
                "path": "/usr/lib/python3/dist-packages",
                "license_expression": "",
                "license": "MIT",
                "classifiers": [],
            },
        ],
    }


def test_a_bom_from_a_probe_validates_and_says_what_scanners_read():
    inspect = {
        "Id": "sha256:" + "a" * 64,
        "RepoDigests": ["123.dkr.ecr.eu-west-1.amazonaws.com/byoc-fm@sha256:" + "b" * 64],
        "Architecture": "amd64",
        "Os": "linux",
        "Config": {"Labels": {"org.opencontainers.image.version": "0.1.0", "unrelated": "x"}},
    }
    bom = sbom.build_bom(sbom.parse_reference("byoc-fm:0.1.0-cpu"), inspect, synthetic_probe())
    text = sbom.serialize(bom, SchemaVersion.V1_5)
    assert JsonStrictValidator(SchemaVersion.V1_5).validate_str(text) is None
    doc = json.loads(text)
    assert doc["specVersion"] == "1.5"
    root = doc["metadata"]["component"]
    assert (root["type"], root["name"], root["version"]) == ("container", "byoc-fm", "0.1.0-cpu")
    props = {p["name"]: p["value"] for p in root["properties"]}
    assert props["byoc:image:id"] == inspect["Id"] and props["org.opencontainers.image.version"] == "0.1.0"
    assert "unrelated" not in props
    oci = PackageURL.from_string(root["purl"])
    assert (oci.type, oci.name, oci.version) == ("oci", "byoc-fm", "sha256:" + "b" * 64)
    assert oci.qualifiers["repository_url"] == "123.dkr.ecr.eu-west-1.amazonaws.com/byoc-fm"
    components = {c["bom-ref"]: c for c in doc["components"]}
    assert len(components) == len(doc["components"]) == 1 + 3 + 3  # the OS, 3 deb, 3 pypi: bom-refs unique
    os_component = next(c for c in doc["components"] if c["type"] == "operating-system")
    assert (os_component["name"], os_component["version"]) == ("debian", "12.15")
    deps = {d["ref"]: set(d.get("dependsOn", [])) for d in doc["dependencies"]}
    debs = {c["bom-ref"] for c in doc["components"] if c.get("purl", "").startswith("pkg:deb/")}
    assert deps[os_component["bom-ref"]] == debs and len(debs) == 3
    bash = next(c for c in doc["components"] if c["name"] == "bash")
    assert bash["purl"] == "pkg:deb/debian/bash@5.2.15-2%2Bb13?arch=amd64&distro=debian-12&upstream=bash%405.2.15-2"
    assert bash["licenses"] == [
        {"expression": "GPL-3.0-or-later AND BSD-4-Clause-UC AND (GPL-2.0-or-later OR Artistic-1.0-Perl)"}
    ]
    trivy = {p["name"]: p["value"] for p in bash["properties"] if p["name"].startswith("aquasecurity:trivy:")}
    assert trivy == {
        "aquasecurity:trivy:SrcName": "bash",
        "aquasecurity:trivy:SrcVersion": "5.2.15",
        "aquasecurity:trivy:SrcRelease": "2",
    }
    flask = next(c for c in doc["components"] if c["name"] == "Flask")
    assert flask["purl"] == "pkg:pypi/flask@3.1.3" and flask["licenses"] == [{"license": {"id": "BSD-3-Clause"}}]
    assert sum(1 for c in doc["components"] if c.get("purl") == "pkg:pypi/six@1.17.0") == 2


def test_cli_fails_in_one_line_for_a_missing_image(monkeypatch, capsys):
    monkeypatch.setattr(sbom, "docker_ready", lambda: None)

    def inspect(reference):
        raise sbom.SbomError(f"no such image: {reference} (build it first, e.g. ./build.sh build)")

    monkeypatch.setattr(sbom, "inspect_image", inspect)
    assert sbom.main(["byoc-nothing:0.0.0-cpu"]) == 1
    err = capsys.readouterr().err
    assert err == "sbom: no such image: byoc-nothing:0.0.0-cpu (build it first, e.g. ./build.sh build)\n"


def test_cli_fails_in_one_line_when_docker_does_not_answer(monkeypatch, capsys):
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    assert sbom.main(["byoc-fm:0.1.0-cpu"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("sbom: docker is not") and err.count("\n") == 1


# ------------------------------------------------------------------------------------------ the images (docker)
FAMILIES = ["test-linear", "mxnet-mf", "gluon-cnn", "fm", "ncf-tf"]
GROUND_TRUTH = (
    "dpkg-query -W -f '${db:Status-Abbrev} ${Package} ${Version}\\n'; echo '--- pip'; "
    "python -m pip list --format json --disable-pip-version-check"
)


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@pytest.mark.docker
@pytest.mark.parametrize("family", FAMILIES)
def test_sbom_of_an_image_lists_what_dpkg_and_pip_show(family, tmp_path):
    image = build_image(family)
    result = sbom.sbom_for(image, tmp_path)
    ref = sbom.parse_reference(image)
    assert result.path == tmp_path / f"{ref.file_stem}.cdx.json"
    text = result.path.read_text()
    assert JsonStrictValidator(SchemaVersion.V1_5).validate_str(text) is None
    doc = json.loads(text)

    truth = subprocess.run(
        ["docker", "run", "--rm", "--network", "none", "--entrypoint", "sh", image, "-c", GROUND_TRUTH],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    dpkg_text, _, pip_text = truth.partition("--- pip\n")
    installed = {tuple(line.split()[1:3]) for line in dpkg_text.splitlines() if line[1:2] == "i"}
    pip = {(normalize(d["name"]), d["version"]) for d in json.loads(pip_text)}

    packages = [c for c in doc["components"] if c["type"] != "operating-system"]
    for component in packages:
        assert component.get("purl") and component.get("version"), component["name"]
        assert PackageURL.from_string(component["purl"]).version == component["version"]
    debs = [PackageURL.from_string(c["purl"]) for c in packages if c["purl"].startswith("pkg:deb/")]
    pypis = [c for c in packages if c["purl"].startswith("pkg:pypi/")]
    listed_debs = {(p.name, p.version) for p in debs}
    listed_pypi = {(PackageURL.from_string(c["purl"]).name, c["version"]) for c in pypis}
    assert installed and pip
    deb_coverage = len(installed & listed_debs) / len(installed)
    pip_coverage = len(pip & listed_pypi) / len(pip)
    licensed = sum(1 for c in pypis if c.get("licenses")) / len(pypis)
    print(
        f"{image}: {len(debs)} deb, {len(pypis)} pypi; coverage deb {deb_coverage:.0%}, pip {pip_coverage:.0%}; "
        f"pypi licensed {licensed:.0%}; deb licensed {result.deb_licensed}/{result.deb}"
    )
    assert deb_coverage >= 0.95, sorted(installed - listed_debs)
    assert pip_coverage >= 0.95, sorted(pip - listed_pypi)
    assert licensed >= 0.90, [c["name"] for c in pypis if not c.get("licenses")]
    assert {p.qualifiers.get("distro") for p in debs} == {"debian-12"}
    assert (result.deb, result.pypi) == (len(debs), len(pypis))

    root = doc["metadata"]["component"]
    assert (root["type"], root["name"], root["version"]) == ("container", ref.repo, ref.tag)
    image_id = subprocess.run(
        ["docker", "image", "inspect", "-f", "{{.Id}}", image], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert {"name": "byoc:image:id", "value": image_id} in root["properties"]
