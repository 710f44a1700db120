#!/usr/bin/env bash
# Builds the OCI image of one ODIN exporter with buildah, without pulling anything: `scratch`
# plus the files docker/rootfs.sh lays out (the release binary, the shared libraries it and
# NVML need, /etc/passwd and /etc/group) and the third-party notices docker/notices.py writes
# ($ODIN_NOTICES), run as user 65534, the exporter as entrypoint.
#
#   docker/build.sh [--binary PATH] [--tag IMAGE] EXPORTER
#
#   EXPORTER       a name from exporters.toml (scripts/manifest.py names)
#   --binary PATH  put this binary in the image instead of building it with
#                  `cargo build --release --locked -p EXPORTER`
#   --tag IMAGE    image name (default localhost/odin/EXPORTER:dev)
#
# Prints the image name on the last line of stdout. Images live in buildah's vfs storage
# (`buildah --storage-driver vfs images`); docker/README.md says how to run and export them.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
# shellcheck source=docker/image.env
. "$here/image.env"

die() { echo "build.sh: $*" >&2; exit 1; }
usage() { sed -n '/^#   docker/,/^#   --tag/s/^# \{0,1\}//p' "$0" >&2; exit 2; }

binary="" tag="" exporter=""
while [ $# -gt 0 ]; do
  case $1 in
    --binary) [ $# -ge 2 ] || usage; binary=$2; shift 2 ;;
    --binary=*) binary=${1#*=}; shift ;;
    --tag) [ $# -ge 2 ] || usage; tag=$2; shift 2 ;;
    --tag=*) tag=${1#*=}; shift ;;
    -h | --help) usage ;;
    -*) echo "build.sh: unknown option $1" >&2; usage ;;
    *) [ -z "$exporter" ] || usage; exporter=$1; shift ;;
  esac
done
[ -n "$exporter" ] || usage

names=$(python3 "$repo/scripts/manifest.py" names) || die "cannot read exporters.toml"
grep -qxF -- "$exporter" <<<"$names" ||
  die "$exporter: not an exporter of exporters.toml (known: $(tr "\n" " " <<<"$names"))"
port=$(python3 "$repo/scripts/manifest.py" field "$exporter" port)
tag=${tag:-localhost/odin/$exporter:dev}
command -v buildah >/dev/null || die "buildah is not installed (apt-get install buildah)"

# The crate's version, licence and repository from cargo, which also knows the target directory.
metadata=$(cd "$repo" && cargo metadata --locked --no-deps --format-version 1)
IFS='|' read -r version license source target_dir < <(python3 -c '
import json, sys
m = json.load(sys.stdin)
p = next(p for p in m["packages"] if p["name"] == sys.argv[1])
print(p["version"], p["license"] or "unknown", p["repository"] or "", m["target_directory"], sep="|")
' "$exporter" <<<"$metadata")

if [ -z "$binary" ]; then
  (cd "$repo" && cargo build --release --locked -p "$exporter") >&2
  binary="$target_dir/release/$exporter"
fi
[ -x "$binary" ] || die "$binary: not an executable"
revision=$(git -C "$repo" rev-parse HEAD 2>/dev/null || echo unknown)
created=$(date -u +%Y-%m-%dT%H:%M:%SZ)

work=$(mktemp -d)
ctr=""
cleanup() {
  [ -z "$ctr" ] || buildah --storage-driver vfs rm "$ctr" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

bash "$here/rootfs.sh" "$binary" "$exporter" "$work/rootfs"
# The licence and notice texts of what the binary links and the image holds, at $ODIN_NOTICES.
python3 "$here/notices.py" --rootfs "$work/rootfs" --manifest-path "$repo/Cargo.toml" "$exporter" >&2 ||
  die "$exporter: no third-party notices (docker/notices.py)"

bah() { buildah --storage-driver vfs "$@"; }
ctr=$(bah from --name "odin-build-$exporter-$$" scratch)
bah copy --quiet "$ctr" "$work/rootfs/" / >/dev/null
bah config \
  --user "$ODIN_UID:$ODIN_GID" \
  --entrypoint "[\"$ODIN_ENTRYPOINT\"]" \
  --cmd "" \
  --workingdir / \
  --port "$port/tcp" \
  --label "org.opencontainers.image.title=$exporter" \
  --label "org.opencontainers.image.description=ODIN $exporter, a Prometheus exporter" \
  --label "org.opencontainers.image.licenses=$license" \
  --label "org.opencontainers.image.version=$version" \
  --label "org.opencontainers.image.revision=$revision" \
  ${source:+--label "org.opencontainers.image.source=$source"} \
  --label "org.opencontainers.image.created=$created" \
  "$ctr"
previous=$(bah images --quiet --no-trunc "$tag" 2>/dev/null || true)
bah commit --quiet --rm "$ctr" "$tag" >/dev/null
ctr=""
# The image the tag named before, now untagged: remove it (buildah refuses while another tag or
# a container still uses it).
current=$(bah images --quiet --no-trunc "$tag")
for id in $previous; do
  [ "$id" = "$current" ] || bah rmi "$id" >/dev/null 2>&1 || true
done
echo "$tag"
