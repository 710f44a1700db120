#!/usr/bin/env python3
"""Writes the third-party notices of one ODIN exporter's image: one text file with the licence
and notice texts of everything the image's binary and files contain.

    docker/notices.py [--rootfs DIR] [--out FILE] [--manifest-path Cargo.toml] EXPORTER

The file holds, in this order:

1. the workspace crates the binary links (ODIN's own, Apache-2.0), with the Apache License 2.0;
2. every other crate the binary links: the normal dependencies of EXPORTER for the host target,
   as `cargo tree -p EXPORTER -e normal` lists them (no dev- or build-dependencies; the same
   per-package feature resolution as `cargo build -p EXPORTER`), deduplicated; for each its
   name, version, licence expression (Cargo.toml) and the full text of every licence or notice
   file it ships at the top of its source directory (LICENSE*, LICENCE*, UNLICENSE*, COPYING*,
   NOTICE*, COPYRIGHT*, and the file its `license-file` names);
3. the Rust standard library, which every binary links statically: the toolchain's own
   notices (share/doc/rust/COPYRIGHT-library.html of `rustc --print sysroot`, as text);
4. the Debian packages whose files the image or the binary contains: with --rootfs, every
   regular file under DIR but the binary, /etc/passwd, /etc/group and FILE (the C library
   pieces docker/rootfs.sh copies), and the C runtime objects the linker (cc) puts into every
   executable; each package's /usr/share/doc/<package>/copyright.

A crate that ships no licence file stops the script (exit 1, naming the crates), unless
EXCEPTIONS below names it: then its licence text is the SPDX text of the toolchain's
share/doc/rust/licenses/<SPDX-ID>.txt, with the copyright line taken from its authors. A file
of the image that no Debian package owns, or a package without a copyright file, stops it too.

--rootfs DIR: the image's root filesystem as docker/rootfs.sh laid it out; FILE defaults to
DIR + $ODIN_NOTICES (docker/image.env) and is written there. Without --rootfs, --out is needed
and no Debian package of the image is looked at (the C runtime objects still are).

Python standard library only; needs cargo, rustc, cc and dpkg-query (Debian). Used by
docker/build.sh and by docker/Dockerfile's builder stage, after docker/rootfs.sh.
"""
from __future__ import annotations

import argparse
import html.parser
import json
import os
import re
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

# Crates that ship no licence file, and the SPDX licence whose text stands in for it. Keep this
# short: every entry is a crate whose published package lacks the file its licence requires.
EXCEPTIONS = {
    # x509-parser -> asn1-rs -> asn1-rs-impl (proc-macro). "MIT/Apache-2.0"; the published
    # 0.2.0 package has no licence file (its sibling asn1-rs has both). Both texts are given.
    "asn1-rs-impl": ["MIT", "Apache-2.0"],
}

# Files at the top of a crate's source directory that carry its licence or notices.
LICENCE_FILE = re.compile(r"^(un)?licen[cs]e|^copying|^notice|^copyright", re.IGNORECASE)

# The C runtime objects and archives that cc links into every executable it makes for rustc.
C_RUNTIME = ["Scrt1.o", "crti.o", "crtn.o", "crtbeginS.o", "crtendS.o", "libgcc.a", "libc_nonshared.a"]

RULE = "=" * 80
SUBRULE = "-" * 80


class Failure(Exception):
    pass


def run(cmd: list[str], cwd: Path | None = None) -> str:
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd)
    except FileNotFoundError:
        raise Failure(f"{cmd[0]}: not installed")
    if p.returncode != 0:
        raise Failure(f"{' '.join(cmd)} exited {p.returncode}: {p.stderr.strip()[-2000:]}")
    return p.stdout


def image_env() -> dict[str, str]:
    env = {}
    for line in (HERE / "image.env").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            env[key] = value.strip('"')
    return env


def read_text(path: Path) -> str:
    return path.read_bytes().decode("utf-8", errors="replace").replace("\r\n", "\n").rstrip() + "\n"


# ------------------------------------------------------------------------------------ crates

def linked_crates(exporter: str, manifest: Path | None, host: str) -> list[tuple[str, str]]:
    """(name, version) of every crate `cargo tree -p EXPORTER -e normal` lists, sorted."""
    cmd = ["cargo", "tree", "--locked", "-p", exporter, "-e", "normal", "--target", host,
           "--prefix", "none", "--format", "{p}"]
    if manifest:
        cmd += ["--manifest-path", str(manifest)]
    crates = set()
    for line in run(cmd).splitlines():
        m = re.match(r"^(\S+) v(\S+)", line)
        if m:
            crates.add((m.group(1), m.group(2)))
    if not crates:
        raise Failure(f"cargo tree lists nothing for {exporter}")
    return sorted(crates)


def licence_files(package: dict) -> list[Path]:
    root = Path(package["manifest_path"]).parent
    files = sorted(p for p in root.iterdir() if LICENCE_FILE.match(p.name) and p.is_file())
    if package.get("license_file"):
        named = (root / package["license_file"]).resolve()
        if named.is_file() and named not in {f.resolve() for f in files}:
            files.append(named)
    return files


def crate_sections(exporter: str, manifest: Path | None, spdx: Path) -> tuple[list[str], list[str]]:
    host = re.search(r"^host: (\S+)", run(["rustc", "-vV"]), re.M).group(1)
    meta_cmd = ["cargo", "metadata", "--locked", "--format-version", "1", "--filter-platform", host]
    if manifest:
        meta_cmd += ["--manifest-path", str(manifest)]
    meta = json.loads(run(meta_cmd))
    members = set(meta["workspace_members"])
    by_key: dict[tuple[str, str], list[dict]] = {}
    for p in meta["packages"]:
        by_key.setdefault((p["name"], p["version"]), []).append(p)

    own, third, missing = [], [], []
    for name, version in linked_crates(exporter, manifest, host):
        candidates = by_key.get((name, version), [])
        if len(candidates) != 1:
            raise Failure(f"{name} {version}: {len(candidates)} packages of that name and version in cargo metadata")
        pkg = candidates[0]
        licence = pkg["license"] or (f"see {pkg['license_file']}" if pkg.get("license_file") else "none given")
        if pkg["id"] in members:
            own.append(f"{name} {version} ({licence})")
            continue
        parts = [RULE, f"crate: {name} {version}", f"licence: {licence}"]
        if pkg.get("repository"):
            parts.append(f"repository: {pkg['repository']}")
        files = licence_files(pkg)
        if files:
            for f in files:
                parts += [SUBRULE, f"file: {f.name}", "", read_text(f)]
        elif name in EXCEPTIONS:
            authors = ", ".join(re.sub(r"\s*<[^>]*>", "", a) for a in pkg.get("authors") or []) or "its authors"
            parts += ["", f"The published crate ships no licence file; below are the SPDX texts of "
                          f"{' and '.join(EXCEPTIONS[name])} (its licence: {licence}), "
                          f"copyright holders as its Cargo.toml names them: {authors}."]
            for spdx_id in EXCEPTIONS[name]:
                text = spdx / f"{spdx_id}.txt"
                if not text.is_file():
                    raise Failure(f"{text}: no SPDX text for {name}'s {spdx_id}")
                body = read_text(text).replace("<year> <copyright holders>", authors)
                parts += [SUBRULE, f"file: SPDX {spdx_id} (standing in for the missing licence file)", "", body]
        else:
            missing.append(f"{name} {version} ({licence}, {Path(pkg['manifest_path']).parent})")
            continue
        third.append("\n".join(parts))
    if missing:
        raise Failure("crates that ship no licence file (add them to EXCEPTIONS in docker/notices.py "
                      "only if their licence's SPDX text may stand in):\n  " + "\n  ".join(missing))
    return own, third


# ------------------------------------------------------------------------ the standard library

class _HtmlText(html.parser.HTMLParser):
    """Text of an HTML page: block elements start new lines, <pre> keeps its layout."""

    BLOCK = {"p", "div", "h1", "h2", "h3", "h4", "li", "ul", "br", "tr", "table", "pre"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.pre = 0
        self.skip = 0

    def handle_starttag(self, tag, attrs):
        if tag in ("head", "style", "script"):
            self.skip += 1
        if tag == "pre":
            self.pre += 1
        if tag in self.BLOCK:
            self.out.append("\n")
        if tag in ("h1", "h2", "h3"):
            self.out.append("\n")

    def handle_endtag(self, tag):
        if tag in ("head", "style", "script"):
            self.skip -= 1
        if tag == "pre":
            self.pre -= 1
        if tag in self.BLOCK:
            self.out.append("\n")

    def handle_data(self, data):
        if self.skip:
            return
        self.out.append(data if self.pre else re.sub(r"\s+", " ", data))

    def text(self) -> str:
        lines = [line.rstrip() for line in "".join(self.out).splitlines()]
        text = "\n".join(lines)
        return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"


def std_section() -> str:
    sysroot = Path(run(["rustc", "--print", "sysroot"]).strip())
    page = sysroot / "share/doc/rust/COPYRIGHT-library.html"
    if not page.is_file():
        raise Failure(f"{page}: missing (the rustc component ships it): no notices for the standard library")
    version = run(["rustc", "--version"]).strip()
    parser = _HtmlText()
    parser.feed(page.read_text(encoding="utf-8", errors="replace"))
    return "\n".join([RULE, f"crate: Rust standard library ({version})", "licence: Apache-2.0 OR MIT, with the "
                      "dependencies' licences below", SUBRULE, f"file: {page.name} (as text)", "", parser.text()])


# ------------------------------------------------------------------------- Debian packages

def dpkg_owners(paths: list[str]) -> dict[str, str]:
    """The Debian package that installed each path (or the same file under /usr or without
    it: Debian 12's packages name /lib/..., its merged /usr holds them at /usr/lib/...). One
    dpkg-query for all (it reads every package's file list); paths it does not know are left
    out (its exit status then says 1)."""
    variants = {}
    for path in paths:
        variants[path] = [path, path[4:] if path.startswith("/usr/") else "/usr" + path]
    p = subprocess.run(["dpkg-query", "-S", *(v for vs in variants.values() for v in vs)],
                       capture_output=True, text=True)
    owned = {}
    for line in p.stdout.splitlines():
        pkgs, sep, path = line.partition(": ")
        if sep and not pkgs.startswith("diversion"):
            owned[path] = pkgs.split(",")[0].strip()
    return {path: owned[v] for path, vs in variants.items() for v in vs if v in owned}


def image_files(rootfs: Path, skip: set[Path]) -> list[str]:
    files = []
    for dirpath, _dirs, names in os.walk(rootfs):
        for n in names:
            f = Path(dirpath) / n
            if f.is_file() and not f.is_symlink() and f.resolve() not in skip:
                files.append("/" + str(f.relative_to(rootfs)))
    return sorted(files)


def package_sections(files: dict[str, str]) -> list[str]:
    """files: path -> why it is there. One section per distinct copyright text."""
    owners: dict[str, list[str]] = {}
    unowned = []
    known = dpkg_owners(list(files))
    for path, why in files.items():
        if path not in known:
            unowned.append(path)
        else:
            owners.setdefault(known[path], []).append(f"{path} ({why})")
    if unowned:
        raise Failure("files of the image that no Debian package owns (no licence to give): " + ", ".join(unowned))
    # Packages of one source (libc6, libc6-dev) ship the same text: given once.
    by_copyright: dict[str, list[str]] = {}
    listed: dict[str, list[str]] = {}
    for pkg in sorted(owners):
        name = pkg.split(":")[0]
        copyright_file = Path("/usr/share/doc") / name / "copyright"
        if not copyright_file.is_file():
            raise Failure(f"{copyright_file}: missing: no licence for {', '.join(owners[pkg])}")
        version = run(["dpkg-query", "-W", "-f", "${Version}", pkg]).strip()
        key = read_text(copyright_file)
        by_copyright.setdefault(key, []).append(f"{name} {version}")
        listed.setdefault(key, []).extend(owners[pkg])
    sections = []
    for key, pkgs in by_copyright.items():
        sections.append("\n".join([RULE, "debian package: " + ", ".join(pkgs), "files:",
                                   *(f"  {f}" for f in sorted(listed[key])),
                                   SUBRULE, f"file: /usr/share/doc/{pkgs[0].split()[0]}/copyright", "",
                                   key]))
    return sections


def c_runtime() -> dict[str, str]:
    out = {}
    for name in C_RUNTIME:
        path = run(["cc", f"-print-file-name={name}"]).strip()
        if not os.path.isabs(path) or not os.path.isfile(path):
            raise Failure(f"cc does not know {name}")
        out[os.path.realpath(path)] = "linked into the binary by cc"
    return out


# ----------------------------------------------------------------------------------- main

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("exporter")
    ap.add_argument("--rootfs", type=Path, help="the image's root filesystem (docker/rootfs.sh)")
    ap.add_argument("--out", type=Path, help="the file to write (default: ROOTFS + $ODIN_NOTICES)")
    ap.add_argument("--manifest-path", type=Path, help="Cargo.toml of the workspace (default: this repository's)")
    args = ap.parse_args()
    env = image_env()
    if args.out is None:
        if args.rootfs is None:
            ap.error("--out or --rootfs is needed")
        args.out = args.rootfs / env["ODIN_NOTICES"].lstrip("/")
    manifest = args.manifest_path or HERE.parent / "Cargo.toml"
    sysroot = Path(run(["rustc", "--print", "sysroot"]).strip())
    spdx = sysroot / "share/doc/rust/licenses"

    try:
        own, third = crate_sections(args.exporter, manifest, spdx)
        files = c_runtime()
        if args.rootfs:
            rootfs = args.rootfs.resolve()
            skip = {(rootfs / env["ODIN_BIN_DIR"].lstrip("/") / args.exporter).resolve(),
                    (rootfs / "etc/passwd").resolve(), (rootfs / "etc/group").resolve(),
                    args.out.resolve()}
            for f in image_files(rootfs, skip):
                files[f] = "in the image"
        debian = package_sections(files)
        std = std_section()
        apache = spdx / "Apache-2.0.txt"
        if not apache.is_file():
            raise Failure(f"{apache}: missing: no text of ODIN's own licence")
    except Failure as e:
        print(f"notices.py: {args.exporter}: {e}", file=sys.stderr)
        return 1

    head = [
        f"Third-party notices of the ODIN {args.exporter} image",
        "",
        f"The binary {env['ODIN_BIN_DIR']}/{args.exporter} is ODIN's own code, licensed under the",
        "Apache License 2.0 (text in the first section), statically linked with the Rust crates and",
        "the Rust standard library listed below; the image also holds files of the Debian packages",
        "listed last. Each section gives the licence and the licence and notice files its authors",
        "ship, in full. Written by docker/notices.py.",
        "",
        RULE,
        "ODIN (the project's own crates, Apache-2.0):",
        *(f"  {c}" for c in own),
        SUBRULE,
        "file: Apache License 2.0",
        "",
        read_text(apache),
    ]
    text = "\n".join(head + third + [std] + debian) + "\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    args.out.chmod(0o644)
    print(f"notices.py: {args.out}: {len(third)} crates, {len(own)} of ODIN, {len(debian)} Debian copyright files, "
          f"{len(text.encode())} bytes", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
