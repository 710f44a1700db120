"""The container images of ODIN's exporters, built and run for real.

For every exporter of exporters.toml, docker/build.sh builds its image with buildah (`scratch`,
the release binary, the libraries it needs, user 65534) and the image is run with
`buildah run --isolation chroot`: the binary starts inside the image's root filesystem, with
only the files the image holds. Checked here:

- `--once` prints an exposition that `promtool check metrics` finds nothing to say about, and
  exits as documented (gpu-exporter with no GPU: exit 1, `nvidia_gpu_devices 0`,
  `reason="nothing_available"`, the hint on stderr);
- served, the exporter answers /metrics and /health and runs as 65534:65534;
- gpu-exporter loads a libnvidia-ml.so.1 linked like NVIDIA's (it needs libpthread.so.0,
  libm.so.6, libdl.so.2, librt.so.1, libc.so.6) through the image's C library: the fake NVML of
  exporters/gpu-exporter/tests/fake-nvml, mounted where the NVIDIA runtime mounts the real one
  and given with --nvml.library; GPU metrics come out with the data file's values. Without the
  C library's stubs that the image adds for NVML, the same run fails to load the library;
- the image's user, entrypoint, exposed port, labels and files agree with docker/image.env and
  docker/Dockerfile, and the Dockerfile's build context (.dockerignore) holds the whole
  workspace;
- the image's third-party notices ($ODIN_NOTICES, written by docker/notices.py) have a section
  with licence text for every crate `cargo tree` says the binary links, and no other crate;
  for the Rust standard library; and for the Debian package of every other file the image
  holds. notices.py refuses a crate that ships no licence file.

Run: `.venv/bin/pytest tests/test_images.py` (as root: buildah's vfs storage). Needs buildah,
promtool, cc, readelf and cargo; the nvidia-smi captures of ../shared/captures (or
$ODIN_SHARED_DIR). The release binaries are built once per session; images and containers are
removed at the end.
"""
from __future__ import annotations

import contextlib
import fnmatch
import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from odin import shared_dir

ROOT = Path(__file__).resolve().parent.parent
DOCKER = ROOT / "docker"
FAKE_NVML_C = ROOT / "exporters/gpu-exporter/tests/fake-nvml/fake_nvml.c"
GPU_CAPTURE = "linux-x86_64__nvidia-geforce-rtx-2080-super__595.71.05.txt"
BUILDAH = ["buildah", "--storage-driver", "vfs"]
RUN_TIMEOUT = 60


def _load_manifest():
    spec = importlib.util.spec_from_file_location("odin_scripts_manifest", ROOT / "scripts/manifest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


MANIFEST = {e["name"]: e for e in _load_manifest().load()}
EXPORTERS = list(MANIFEST)


def read_image_env() -> dict[str, str]:
    """docker/image.env: KEY=value lines (values may be double-quoted)."""
    env = {}
    for line in (DOCKER / "image.env").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            env[key] = value.strip('"')
    return env


IMAGE_ENV = read_image_env()
USER = f"{IMAGE_ENV['ODIN_UID']}:{IMAGE_ENV['ODIN_GID']}"
ENTRYPOINT = IMAGE_ENV["ODIN_ENTRYPOINT"]
NVML_NEEDS = IMAGE_ENV["ODIN_NVML_NEEDS"].split()


def sh(cmd, *, check=True, timeout=RUN_TIMEOUT, **kw) -> subprocess.CompletedProcess:
    p = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout,
                       cwd=kw.pop("cwd", ROOT), **kw)
    if check and p.returncode != 0:
        pytest.fail(f"{' '.join(map(str, cmd))} exited {p.returncode}\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    return p


def promtool_says(text: str) -> str:
    p = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True,
                       timeout=RUN_TIMEOUT)
    return (p.stdout + p.stderr).strip()


def samples(text: str) -> dict[str, float]:
    """Exposition lines `name{labels} value` -> value, keyed by everything before the value."""
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            series, _, value = line.rpartition(" ")
            out[series] = float(value)
    return out


def needed(elf: Path) -> list[str]:
    """DT_NEEDED entries of a shared object or executable (readelf -d)."""
    p = sh(["readelf", "-d", elf])
    return re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", p.stdout)


def target_dir() -> Path:
    return Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))


# --------------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="session")
def tools():
    missing = [t for t in ("buildah", "promtool", "cargo", "cc", "readelf") if not shutil.which(t)]
    if missing:
        pytest.fail(f"not installed: {', '.join(missing)} (scripts/setup.sh; buildah: apt-get install buildah)")
    if os.geteuid() != 0:
        pytest.fail("buildah's vfs storage and chroot isolation need root here")


@pytest.fixture(scope="session")
def release_binaries(tools) -> dict[str, Path]:
    """Every exporter's release binary, from one cargo invocation per session."""
    cmd = ["cargo", "build", "--release", "--locked"]
    for name in EXPORTERS:
        cmd += ["-p", name]
    sh(cmd, timeout=3600)
    return {name: target_dir() / "release" / name for name in EXPORTERS}


class Images:
    """Images built by docker/build.sh under a tag of this session, built on first use."""

    def __init__(self, binaries: dict[str, Path]):
        self.binaries = binaries
        self.tags: dict[str, str] = {}

    def __getitem__(self, name: str) -> str:
        if name not in self.tags:
            tag = f"localhost/odin/{name}:pytest-{os.getpid()}"
            p = sh([DOCKER / "build.sh", "--binary", self.binaries[name], "--tag", tag, name], timeout=600)
            assert p.stdout.strip().splitlines()[-1] == tag, p.stdout
            self.tags[name] = tag
        return self.tags[name]

    def remove_all(self):
        for tag in self.tags.values():
            subprocess.run(BUILDAH + ["rmi", tag], capture_output=True, timeout=RUN_TIMEOUT)


@pytest.fixture(scope="session")
def images(release_binaries):
    built = Images(release_binaries)
    yield built
    built.remove_all()


_containers = 0


@contextlib.contextmanager
def container(image: str):
    """A working container of `image` (its own copy of the root filesystem), removed after."""
    global _containers
    _containers += 1
    name = f"odin-pytest-{os.getpid()}-{_containers}"
    sh(BUILDAH + ["from", "--name", name, image])
    try:
        yield name
    finally:
        subprocess.run(BUILDAH + ["rm", name], capture_output=True, timeout=RUN_TIMEOUT)


def run_in(ctr: str, args: list[str], *, volumes=(), env=(), timeout=RUN_TIMEOUT):
    """The image's entrypoint with `args`, inside the container's root filesystem, as the
    image's user. buildah passes the exit status through."""
    cmd = BUILDAH + ["run", "--isolation", "chroot"]
    for v in volumes:
        cmd += ["-v", v]
    for e in env:
        cmd += ["-e", e]
    return sh(cmd + [ctr, "--", ENTRYPOINT, *args], check=False, timeout=timeout)


def inspect(image: str) -> dict:
    return json.loads(sh(BUILDAH + ["inspect", "--type", "image", image]).stdout)


@contextlib.contextmanager
def mounted(ctr: str):
    """The container's root filesystem, mounted on this machine."""
    path = Path(sh(BUILDAH + ["mount", ctr]).stdout.strip())
    try:
        yield path
    finally:
        subprocess.run(BUILDAH + ["umount", ctr], capture_output=True, timeout=RUN_TIMEOUT)


def resolve_in(root: Path, path: str, depth=0) -> Path:
    """`path` resolved inside `root` as a chroot would (absolute links are relative to root)."""
    assert depth < 40, f"link loop at {path}"
    parts = [p for p in path.split("/") if p]
    cur = ""
    for i, part in enumerate(parts):
        if part == "..":
            cur = cur.rsplit("/", 1)[0]
            continue
        nxt = f"{cur}/{part}"
        host = root / nxt.lstrip("/")
        if host.is_symlink():
            target = os.readlink(host)
            base = "" if target.startswith("/") else cur
            return resolve_in(root, f"{base}/{target}/" + "/".join(parts[i + 1:]), depth + 1)
        cur = nxt
    return root / cur.lstrip("/")


# ----------------------------------------------------------------------------- build.sh, config

def test_build_sh_rejects_names_not_in_the_manifest(tools):
    for bad in ("no-such-exporter", "odin-common"):
        p = sh([DOCKER / "build.sh", "--binary", "/bin/true", bad], check=False)
        assert p.returncode != 0 and "not an exporter of exporters.toml" in p.stderr, p.stderr


@pytest.mark.parametrize("name", EXPORTERS)
def test_image_config(images, name):
    config = inspect(images[name])["OCIv1"]["config"]
    assert config.get("User") == USER
    assert config.get("Entrypoint") == [ENTRYPOINT]
    assert not config.get("Cmd")
    assert list(config.get("ExposedPorts", {})) == [f"{MANIFEST[name]['port']}/tcp"]
    labels = config.get("Labels", {})
    assert labels.get("org.opencontainers.image.title") == name
    version = sh(["cargo", "metadata", "--locked", "--no-deps", "--format-version", "1"]).stdout
    want = next(p["version"] for p in json.loads(version)["packages"] if p["name"] == name)
    assert labels.get("org.opencontainers.image.version") == want
    for key in ("description", "licenses", "revision", "created"):
        assert labels.get(f"org.opencontainers.image.{key}"), f"label {key} missing: {labels}"
    # ODIN's own licence (Cargo.toml); the third-party ones are in the notices file.
    want = next(p["license"] for p in json.loads(version)["packages"] if p["name"] == name)
    assert labels.get("org.opencontainers.image.licenses") == want


@pytest.mark.parametrize("name", EXPORTERS)
def test_image_files(images, release_binaries, name):
    """The binary, the entrypoint link, every library the loader maps for it and NVML's
    C-library needs, the user's passwd/group entries; and nothing else (no shell)."""
    env = IMAGE_ENV
    with container(images[name]) as ctr, mounted(ctr) as root:
        binary = root / env["ODIN_BIN_DIR"].lstrip("/") / name
        assert binary.is_file() and os.access(binary, os.X_OK)
        assert binary.read_bytes() == release_binaries[name].read_bytes()
        assert resolve_in(root, ENTRYPOINT) == binary
        ldd = sh(["ldd", release_binaries[name]]).stdout
        loader_paths = re.findall(r"=> (/\S+)", ldd) + re.findall(r"^\s*(/\S+) \(", ldd, re.M)
        assert loader_paths, ldd
        for path in loader_paths:
            assert resolve_in(root, path).is_file(), f"{path} missing from the image"
        libc = next(p for p in loader_paths if p.endswith("/libc.so.6"))
        for lib in NVML_NEEDS:
            assert resolve_in(root, f"{libc.rsplit('/', 1)[0]}/{lib}").is_file(), f"{lib} missing"
        passwd = (root / "etc/passwd").read_text().splitlines()
        assert f"{env['ODIN_USER']}:x:{env['ODIN_UID']}:{env['ODIN_GID']}:" in "\n".join(passwd)
        group = (root / "etc/group").read_text()
        assert f"{env['ODIN_GROUP']}:x:{env['ODIN_GID']}:" in group
        assert not (root / "bin/sh").exists() and not resolve_in(root, "/bin/sh").exists()


# ------------------------------------------------------------------------- third-party notices

NOTICE_RULE = "=" * 80
# What a licence or notice text says somewhere; a crate's name alone does not.
LICENCE_WORDS = re.compile(r"permission|licen[cs]e|copyright|warrant|redistribut|public domain", re.I)


def linked_crates(name: str) -> tuple[set[tuple[str, str]], set[str]]:
    """(name, version) of every crate `cargo tree` says the binary links (normal dependencies
    for this machine's target), and which of them are workspace crates (path dependencies)."""
    out = sh(["cargo", "tree", "--locked", "--offline", "--package", name, "--edges", "normal",
              "--prefix", "none", "--format", "{p}"]).stdout
    crates, own = set(), set()
    for line in out.splitlines():
        m = re.match(r"(\S+) v(\S+)( \((/[^)]*)\))?", line)
        if m:
            crates.add((m.group(1), m.group(2)))
            if m.group(4):
                own.add(m.group(1))
    return crates, own


def notice_sections(text: str) -> dict[str, str]:
    """The notices file's sections by their first line (`crate: NAME VERSION`, ...)."""
    sections = {}
    for part in text.split(NOTICE_RULE + "\n")[1:]:
        head, _, body = part.partition("\n")
        sections[head] = body
    return sections


def licence_texts(section: str) -> list[str]:
    """The texts of a section's `file:` parts that read like a licence (not just a name)."""
    texts = []
    for part in section.split("-" * 80 + "\n")[1:]:
        head, _, body = part.partition("\n")
        if head.startswith("file:") and len(body.strip()) >= 100 and LICENCE_WORDS.search(body):
            texts.append(body)
    return texts


@pytest.mark.parametrize("name", EXPORTERS)
def test_notices(images, release_binaries, name):
    """$ODIN_NOTICES in the image: a section with licence text for every crate the binary
    links (and none for a crate it does not), ODIN's own crates named, the standard library's
    notices, and the Debian copyright text of every library the image holds."""
    crates, own = linked_crates(name)
    assert (name, version_of(name)) in crates and name in own
    with container(images[name]) as ctr, mounted(ctr) as root:
        notices = resolve_in(root, IMAGE_ENV["ODIN_NOTICES"])
        assert notices.is_file(), f"{IMAGE_ENV['ODIN_NOTICES']} missing from the image"
        assert notices.stat().st_mode & 0o004, "the notices are not world-readable"
        text = notices.read_text()
        skip = {resolve_in(root, f"{IMAGE_ENV['ODIN_BIN_DIR']}/{name}"), notices,
                root / "etc/passwd", root / "etc/group"}
        libraries = sorted("/" + str(p.relative_to(root)) for p in root.rglob("*")
                           if p.is_file() and not p.is_symlink() and p not in skip)
    sections = notice_sections(text)
    crate_sections = {k.removeprefix("crate: ") for k in sections if k.startswith("crate: ")}
    third_party = {f"{n} {v}" for n, v in crates if n not in own}
    std = {c for c in crate_sections if c.startswith("Rust standard library")}
    assert len(std) == 1, "no section for the Rust standard library"
    assert crate_sections - std == third_party, (
        f"crates the binary links without a section: {sorted(third_party - crate_sections)}; "
        f"sections for crates it does not link: {sorted(crate_sections - std - third_party)}")
    no_text = [c for c in sorted(third_party | std) if not licence_texts(sections[f"crate: {c}"])]
    assert not no_text, f"sections without licence text: {no_text}"
    odin = "\n" + next(body for head, body in sections.items() if head.startswith("ODIN"))
    for n, v in crates:
        if n in own:
            assert f"\n  {n} {v} (" in odin, f"{n} {v} not listed as ODIN's own"
    assert licence_texts(odin), "ODIN's own licence text missing"
    # Every library of the image in a Debian package's section that holds its copyright file.
    assert libraries and any(lib.endswith("/libc.so.6") for lib in libraries), libraries
    debian = {head: body for head, body in sections.items() if head.startswith("debian package: ")}
    for lib in libraries:
        holders = [h for h, body in debian.items() if f"\n  {lib} (in the image)\n" in body]
        assert len(holders) == 1, f"{lib}: in {len(holders)} Debian package sections"
        assert licence_texts(debian[holders[0]]), f"{holders[0]}: no copyright text"
    libc6 = next(h for h, body in debian.items() if "/libc.so.6 (in the image)" in body)
    assert "libc6 " in libc6 and re.search(r"GNU\s+Lesser\s+General\s+Public\s+License", debian[libc6])


def test_notices_refuse_a_crate_without_licence_file(tools, tmp_path):
    """docker/notices.py on a workspace whose member depends on a crate with no licence file
    (not one of its EXCEPTIONS) exits 1 naming it; with a LICENSE added, its text is there."""
    ws, dep = tmp_path / "ws", tmp_path / "no-licence-dep"
    for crate, manifest in (
        (ws / "app", '[package]\nname = "app"\nversion = "0.1.0"\nedition = "2021"\nlicense = "Apache-2.0"\n'
                     '[dependencies]\nno-licence-dep = { path = "../../no-licence-dep" }\n'),
        (dep, '[package]\nname = "no-licence-dep"\nversion = "1.2.3"\nedition = "2021"\nlicense = "MIT"\n'),
    ):
        (crate / "src").mkdir(parents=True)
        (crate / "Cargo.toml").write_text(manifest)
        (crate / "src/lib.rs").write_text("")
    (ws / "Cargo.toml").write_text('[workspace]\nresolver = "2"\nmembers = ["app"]\n')
    sh(["cargo", "generate-lockfile", "--offline"], cwd=ws)
    out = tmp_path / "NOTICES"
    cmd = [DOCKER / "notices.py", "--manifest-path", ws / "Cargo.toml", "--out", out, "app"]
    p = sh(cmd, check=False)
    assert p.returncode == 1 and "no-licence-dep 1.2.3 (MIT" in p.stderr, p.stderr
    assert not out.exists()
    (dep / "LICENSE").write_text("Copyright (c) 2026 Someone\n\nPermission is hereby granted, " * 3)
    p = sh(cmd)
    sections = notice_sections(out.read_text())
    assert licence_texts(sections["crate: no-licence-dep 1.2.3"])
    assert "\n  app 0.1.0 (Apache-2.0)" in "\n" + next(b for h, b in sections.items() if h.startswith("ODIN"))


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    """docker/Dockerfile as stages of (INSTRUCTION, arguments), continuation lines joined."""
    text = re.sub(r"\\\n", " ", (DOCKER / "Dockerfile").read_text())
    stages: list[list[tuple[str, str]]] = [[]]
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        if word.upper() == "FROM":
            stages.append([])
        stages[-1].append((word.upper(), " ".join(rest.split())))
    return stages


def test_dockerfile_agrees_with_image_env_and_images(images):
    """The Dockerfile's final stage is the image build.sh makes: scratch, the files of
    docker/rootfs.sh, the same user, entrypoint and labels."""
    *_, builder, final = dockerfile_stages()
    args = {k: v for k, v in (a.partition("=")[::2] for i, a in final if i == "ARG")}
    instr = {}
    for i, a in final:
        instr.setdefault(i, []).append(a)
    assert final[0] == ("FROM", "scratch")
    assert instr["USER"] == [USER]
    assert [json.loads(a) for a in instr["ENTRYPOINT"]] == [[ENTRYPOINT]]
    assert instr["COPY"] == ["--from=builder /rootfs/ /"]
    assert instr["EXPOSE"] == ["${PORT}"]
    run = " ".join(a for i, a in builder if i == "RUN")
    assert 'docker/rootfs.sh "target/release/${EXPORTER}" "${EXPORTER}" /rootfs' in run
    # The notices go into /rootfs after rootfs.sh, at image.env's path (notices.py reads it).
    assert run.index("docker/rootfs.sh") < run.index('python3 docker/notices.py --rootfs /rootfs "${EXPORTER}"')
    assert 'cargo build --release --locked -p "${EXPORTER}"' in run
    # The defaults are one exporter of the manifest, with its port.
    assert args["EXPORTER"] in MANIFEST and int(args["PORT"]) == MANIFEST[args["EXPORTER"]]["port"]
    dockerfile_labels = set(re.findall(r"(org\.opencontainers\.image\.[a-z]+)=", " ".join(instr["LABEL"])))
    for name in EXPORTERS:
        config = inspect(images[name])["OCIv1"]["config"]
        assert config["User"] == instr["USER"][0]
        assert config["Entrypoint"] == json.loads(instr["ENTRYPOINT"][0])
        image_labels = {k for k in config["Labels"] if k.startswith("org.opencontainers.image.")}
        # build.sh adds .source where Cargo.toml names a repository; a Dockerfile user adds it.
        assert dockerfile_labels == image_labels - {"org.opencontainers.image.source"}
        licence = re.search(r'org\.opencontainers\.image\.licenses="([^"]+)"', " ".join(instr["LABEL"]))
        assert licence and licence.group(1) == config["Labels"]["org.opencontainers.image.licenses"]


def docker_context(dest: Path) -> None:
    """The build context docker sends for the repository root: every file but those
    .dockerignore excludes (root-anchored patterns, `**`, `!` exceptions)."""
    patterns = []
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            patterns.append((line.startswith("!"), line.lstrip("!").strip("/")))

    def excluded(rel: str) -> bool:
        verdict = False
        for negate, pat in patterns:
            if fnmatch.fnmatchcase(rel, pat) or (pat.startswith("**/") and fnmatch.fnmatchcase(rel, pat[3:])):
                verdict = not negate
        return verdict

    for dirpath, dirnames, filenames in os.walk(ROOT):
        rel_dir = os.path.relpath(dirpath, ROOT)
        rel_dir = "" if rel_dir == "." else rel_dir + "/"
        dirnames[:] = [d for d in dirnames if not excluded(rel_dir + d)]
        for f in filenames:
            if not excluded(rel_dir + f):
                (dest / rel_dir).mkdir(parents=True, exist_ok=True)
                shutil.copy2(Path(dirpath) / f, dest / rel_dir / f, follow_symlinks=False)


def test_dockerfile_builder_stage_sees_the_whole_workspace(tmp_path, tools):
    """What the builder stage's COPY instructions put in its WORKDIR loads as the same Cargo
    workspace, every member included, with the lockfile (cargo --locked)."""
    *_, builder, _final = dockerfile_stages()
    context = tmp_path / "context"
    context.mkdir()
    docker_context(context)
    workdir = tmp_path / "src"
    workdir.mkdir()
    copies = [a for i, a in builder if i == "COPY"]
    assert copies, "the builder stage copies nothing"
    for a in copies:
        # Docker's rules: a directory's contents go into the destination; a file goes into a
        # destination ending in / (or with several sources), else becomes the destination.
        *sources, dest = a.split()
        assert sources and not any(src.startswith("--") for src in sources), a
        for src in sources:
            source, target = context / src, workdir / dest
            assert source.exists(), f"COPY {src}: not in the build context"
            if source.is_dir():
                shutil.copytree(source, target, dirs_exist_ok=True, symlinks=True)
            elif dest.endswith("/") or len(sources) > 1:
                target.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, target / source.name)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, target)

    def members(where: Path) -> list[str]:
        p = sh(["cargo", "metadata", "--locked", "--offline", "--no-deps", "--format-version", "1"], cwd=where)
        meta = json.loads(p.stdout)
        by_id = {pkg["id"]: pkg["name"] for pkg in meta["packages"]}
        return sorted(by_id[i] for i in meta["workspace_members"])

    assert members(workdir) == members(ROOT)
    # The lockfile resolves as it is (--locked) for every member, dev-dependencies included,
    # from what the release build already downloaded.
    sh(["cargo", "tree", "--locked", "--offline", "--workspace", "-e", "normal,build,dev", "--prefix", "none"],
       cwd=workdir)
    for f in ("docker/rootfs.sh", "docker/notices.py", "docker/image.env", "exporters.toml", "Cargo.lock"):
        assert (workdir / f).is_file(), f"{f} not in the builder stage"
    assert not (workdir / "target").exists() and not (workdir / ".git").exists()


def test_dockerfile_is_hadolint_clean():
    hadolint = ROOT / ".venv/bin/hadolint"
    if not hadolint.exists():
        pytest.skip("hadolint not installed (scripts/setup.sh)")
    p = sh([hadolint, DOCKER / "Dockerfile"], check=False)
    assert p.returncode == 0, p.stdout + p.stderr


# -------------------------------------------------------------------------------- running

def state_volume(name: str, tmp_path: Path) -> list[str]:
    """An exporter whose manifest says `host.state` keeps its state in /var/lib/<name>, which its
    DaemonSet mounts from the host: here a fresh directory the image's user owns."""
    if not MANIFEST[name]["host"].get("state"):
        return []
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    os.chown(state, int(IMAGE_ENV["ODIN_UID"]), int(IMAGE_ENV["ODIN_GID"]))
    return [f"{state}:/var/lib/{name}"]


def expect_once(name: str, rc: int, out: str, err: str) -> None:
    """What --once must do in the image, as documented: no collector fails (exit 0) where the
    image has what the exporter reads; gpu-exporter with no GPU exits 1 and says why."""
    prefix = MANIFEST[name]["prefix"]
    values = samples(out)
    assert values.get(f'{prefix}_exporter_build_info{{version="{version_of(name)}",demo="false"}}') == 1, out[:2000]
    assert promtool_says(out) == "", "promtool check metrics"
    if name == "gpu-exporter":
        # README, gpu-exporter "No backend": nvidia_gpu_devices 0, the gpu collector fails with
        # a hint; --once exits 1 when a collector failed.
        assert rc == 1, err
        assert values.get("nvidia_gpu_devices") == 0
        assert values.get('nvidia_gpu_backend_info{backend="none",reason="nothing_available"}') == 1
        assert values.get('nvidia_gpu_collector_success{collector="gpu"}') == 0
        assert "to fix:" in err and "libnvidia-ml.so.1" in err, err
    else:
        assert rc == 0, err
        failed = [k for k, v in values.items() if k.startswith(f"{prefix}_collector_success") and v != 1]
        assert not failed, failed
    if name == "network-exporter":
        # It read this machine's /proc and /sys through the image's root (the runtime mounts
        # them): the devices it reports are this machine's.
        proc_devices = {line.split(":")[0].strip() for line in Path("/proc/net/dev").read_text().splitlines()[2:]}
        sys_devices = {p.name for p in Path("/sys/class/net").iterdir()}
        for metric, known in (("network_receive_bytes_total", proc_devices), ("network_mtu_bytes", sys_devices)):
            seen = {m.group(1) for m in re.finditer(metric + r'\{device="([^"]+)"\}', out)}
            assert seen and seen <= known, (metric, seen, known)


_versions: dict[str, str] = {}


def version_of(name: str) -> str:
    if not _versions:
        meta = json.loads(sh(["cargo", "metadata", "--locked", "--no-deps", "--format-version", "1"]).stdout)
        _versions.update({p["name"]: p["version"] for p in meta["packages"]})
    return _versions[name]


@pytest.mark.parametrize("name", EXPORTERS)
def test_once_in_the_image(images, name, tmp_path):
    with container(images[name]) as ctr:
        p = run_in(ctr, ["--once"], volumes=state_volume(name, tmp_path))
    expect_once(name, p.returncode, p.stdout, p.stderr)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pid_serving(marker: str) -> int | None:
    """The exporter process (not buildah's) whose command line holds `marker`."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0] == ENTRYPOINT.encode() and marker.encode() in argv:
            return int(proc.name)
    return None


@pytest.mark.parametrize("name", EXPORTERS)
def test_serves_as_nobody(images, name, tmp_path):
    port = free_port()
    listen = f"--web.listen-address=127.0.0.1:{port}"
    volumes = [arg for v in state_volume(name, tmp_path) for arg in ("-v", v)]
    with container(images[name]) as ctr:
        proc = subprocess.Popen(BUILDAH + ["run", "--isolation", "chroot", *volumes, ctr, "--",
                                           ENTRYPOINT, listen],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            deadline = time.monotonic() + 30
            body = None
            while time.monotonic() < deadline and proc.poll() is None:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                        body = r.read().decode()
                    break
                except OSError:
                    time.sleep(0.2)
            assert body is not None, f"no /metrics within 30 s; exit {proc.poll()}"
            assert f"{MANIFEST[name]['prefix']}_exporter_build_info" in body
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as r:
                    health = json.loads(r.read())
            except urllib.error.HTTPError as e:  # 503 when unhealthy (gpu-exporter, no GPU)
                health = json.loads(e.read())
            assert health["status"] in ("healthy", "degraded", "unhealthy")
            pid = pid_serving(listen)
            assert pid, "exporter process not found"
            status = (Path("/proc") / str(pid) / "status").read_text()
            ids = {k: v.split() for k, v in (l.split(":", 1) for l in status.splitlines() if ":" in l)}
            uid, gid = IMAGE_ENV["ODIN_UID"], IMAGE_ENV["ODIN_GID"]
            assert ids["Uid"] == [uid] * 4 and ids["Gid"] == [gid] * 4, status
            assert ids["Groups"] in ([], [gid]), status
        finally:
            # buildah ends the exporter with itself (and exits 1: "subprocess exited on killed").
            proc.send_signal(signal.SIGTERM)
            try:
                proc.communicate(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
        assert pid_serving(listen) is None, "the exporter outlived buildah run"


# ---------------------------------------------------------------------- NVML through the image

@pytest.fixture(scope="session")
def fake_nvml(tools, tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """A directory with the fake libnvidia-ml.so.1, linked the way NVIDIA links the real one
    (its DT_NEEDED: libpthread.so.0, libm.so.6, libdl.so.2, librt.so.1, libc.so.6), and its
    data file (2 RTX 2080 SUPERs from a capture, written by the example fake-nvml-data)."""
    out = tmp_path_factory.mktemp("fake-nvml")
    out.chmod(0o755)  # mounted into the image, read by user 65534
    lib = out / "libnvidia-ml.so.1"
    # glibc >= 2.34 has no libpthread.so/libdl.so/librt.so to link with -lpthread and friends
    # (they are archives), so name the run-time files; --no-as-needed keeps them needed.
    sh([os.environ.get("CC", "cc"), "-shared", "-fPIC", "-O2", "-Wall", "-Werror", "-o", lib, FAKE_NVML_C,
        "-Wl,--no-as-needed", *(f"-l:{n}" for n in NVML_NEEDS)])
    assert set(NVML_NEEDS) | {"libc.so.6"} <= set(needed(lib)), needed(lib)
    sh(["cargo", "build", "--locked", "-p", "gpu-exporter", "--example", "fake-nvml-data"], timeout=1800)
    capture = shared_dir() / "captures" / "nvidia-smi" / GPU_CAPTURE
    data = sh([target_dir() / "debug/examples/fake-nvml-data", capture, "load", "2"]).stdout
    (out / "nvml-data.txt").write_text(data)
    for f in out.iterdir():
        f.chmod(0o755 if f.suffix == ".1" else 0o644)
    return out, dict(line.split("=", 1) for line in data.splitlines() if "=" in line)


def expect_gpus(out: str, data: dict[str, str]) -> None:
    values = samples(out)
    count = int(data["count"])
    assert count >= 1 and values.get("nvidia_gpu_devices") == count, out[:2000]
    for i in range(count):
        key = f'nvidia_gpu_temperature_celsius{{gpu="{i}",uuid="{data[f"gpu{i}.uuid"]}"}}'
        assert values.get(key) == float(data[f"gpu{i}.temp_gpu"]), key
        used = [v for k, v in values.items()
                if k.startswith("nvidia_gpu_memory_used_bytes{") and f'uuid="{data[f"gpu{i}.uuid"]}"' in k]
        assert used == [float(data[f"gpu{i}.mem_used"])], used


@pytest.mark.skipif("gpu-exporter" not in MANIFEST, reason="no gpu-exporter in exporters.toml")
def test_gpu_exporter_loads_nvml_through_the_image_libc(images, release_binaries, fake_nvml):
    libdir, data = fake_nvml
    image = images["gpu-exporter"]
    env = ["FAKE_NVML_DATA=/nvml/nvml-data.txt"]
    # The directory of the image's libc.so.6: a system search directory of its loader, where
    # the NVIDIA container runtime mounts the host's libnvidia-ml.so.1.
    ldd = sh(["ldd", release_binaries["gpu-exporter"]]).stdout
    libc_dir = re.search(r"=> (/\S+)/libc\.so\.6", ldd).group(1)

    with container(image) as ctr:
        # --nvml.library: the library at a path of the user's choice.
        p = run_in(ctr, ["--once", "--backend=nvml", "--nvml.library=/nvml/libnvidia-ml.so.1"],
                   volumes=[f"{libdir}:/nvml:ro"], env=env)
        assert p.returncode == 0, p.stderr
        assert samples(p.stdout).get('nvidia_gpu_backend_info{backend="nvml",reason="forced"}') == 1
        expect_gpus(p.stdout, data)
        assert promtool_says(p.stdout) == ""

        # Default: libnvidia-ml.so.1 found by name where the NVIDIA runtime mounts it; with
        # the DCGM family, about which promtool complains only for its upper-case names.
        p = run_in(ctr, ["--once", "--metrics.dcgm-compat", "--metrics.dcgm-hostname=node-1"],
                   volumes=[f"{libdir}:/nvml:ro", f"{libdir}/libnvidia-ml.so.1:{libc_dir}/libnvidia-ml.so.1:ro"],
                   env=env)
        assert p.returncode == 0, p.stderr
        assert samples(p.stdout).get('nvidia_gpu_backend_info{backend="nvml",reason="nvml_ok"}') == 1
        expect_gpus(p.stdout, data)
        assert any(k.startswith("DCGM_FI_DEV_GPU_TEMP{") for k in samples(p.stdout))
        said = promtool_says(p.stdout).splitlines()
        assert said and all(line.startswith("DCGM_FI_DEV_") for line in said), said

    # Control: without the C library's stubs that the image adds for NVML (those the binary
    # does not need itself), the same library no longer loads.
    own = set(needed(release_binaries["gpu-exporter"]))
    removable = [n for n in NVML_NEEDS if n not in own]
    assert removable, "the binary itself needs every NVML stub: the control proves nothing"
    with container(image) as ctr:
        with mounted(ctr) as root:
            for n in removable:
                resolve_in(root, f"{libc_dir}/{n}").unlink()
        p = run_in(ctr, ["--once", "--backend=nvml", "--nvml.library=/nvml/libnvidia-ml.so.1"],
                   volumes=[f"{libdir}:/nvml:ro"], env=env)
        assert p.returncode == 1, p.stderr
        assert samples(p.stdout).get("nvidia_gpu_devices") == 0
        assert re.search(r"cannot load /nvml/libnvidia-ml\.so\.1: (%s): cannot open shared object file"
                         % "|".join(map(re.escape, removable)), p.stderr), p.stderr
