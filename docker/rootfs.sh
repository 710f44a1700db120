#!/usr/bin/env bash
# Lays out the root filesystem of an ODIN image in a directory: the exporter binary, the shared
# libraries it needs at run time (as the ELF loader resolves them here, with the symbolic links
# on their paths), the libraries NVML needs from the image's C library (image.env,
# ODIN_NVML_NEEDS), and /etc/passwd and /etc/group for the user the image runs as.
#
#   docker/rootfs.sh BINARY EXPORTER DIR
#
# Used by docker/Dockerfile (builder stage, then copied into a `scratch` image) and by
# docker/build.sh (copied into a `scratch` image with buildah), so that both images hold the
# same files at the same paths. Needs only bash and coreutils plus ldd (libc-bin).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=docker/image.env
. "$here/image.env"

die() { echo "rootfs.sh: $*" >&2; exit 1; }

[ $# -eq 3 ] || die "usage: rootfs.sh BINARY EXPORTER DIR"
binary=$1 exporter=$2 root=$3
[ -f "$binary" ] && [ -x "$binary" ] || die "$binary: not an executable file"
case $exporter in
  "" | */* | .*) die "$exporter: not an exporter name" ;;
esac
mkdir -p "$root"
root=$(cd "$root" && pwd)

# Copy PATH (absolute) from this machine into $root at the same path. Every symbolic link met on
# the way (a directory such as /lib -> usr/lib, or the file itself) is recreated in $root with
# the same target and followed, so that the image resolves PATH as this machine does.
copy_path() {
  local path dir="" part target rest
  path=$(realpath -m -s "$1")
  local -a parts
  IFS=/ read -r -a parts <<<"${path#/}"
  local i
  for ((i = 0; i < ${#parts[@]}; i++)); do
    part="$dir/${parts[i]}"
    if [ -L "$part" ]; then
      target=$(readlink "$part")
      if [ ! -e "$root$part" ] && [ ! -L "$root$part" ]; then
        mkdir -p "$root$dir"
        ln -s "$target" "$root$part"
      fi
      [ -L "$root$part" ] || die "$part: a link here, not in $root"
      rest=""
      if ((i + 1 < ${#parts[@]})); then
        rest=$(IFS=/; echo "${parts[*]:i+1}")
      fi
      case $target in
        /*) ;;
        *) target="$dir/$target" ;; # $dir has no links in it: '..' may be taken literally
      esac
      copy_path "$target${rest:+/$rest}"
      return
    fi
    dir=$part
  done
  [ -f "$path" ] || die "$path: not a file"
  if [ ! -e "$root$path" ]; then
    mkdir -p "$root${path%/*}"
    cp "$path" "$root$path"
    chmod --reference="$path" "$root$path" # the loader must stay executable

  fi
}

# The libraries the loader maps for FILE, and the loader itself, one absolute path a line, as
# ldd prints them (the path the loader opens, before links are followed). Nothing for a static
# executable.
needed_libraries() {
  local out
  if ! out=$(ldd "$1" 2>&1); then
    case $out in
      *"not a dynamic executable"* | *"statically linked"*) return 0 ;;
      *) die "ldd $1: $out" ;;
    esac
  fi
  if grep -q "not found" <<<"$out"; then
    die "$1 needs libraries this machine lacks: $(grep "not found" <<<"$out" | tr -s ' \t' ' ')"
  fi
  awk '$2 == "=>" && $3 ~ /^\// { print $3; next } $1 ~ /^\// { print $1 }' <<<"$out"
}

# The binary, at the path the Kubernetes DaemonSets and systemd units run, and the entrypoint
# link to it.
install -D -m 0755 "$binary" "$root$ODIN_BIN_DIR/$exporter"
entry_dir=${ODIN_ENTRYPOINT%/*}
mkdir -p "$root$entry_dir"
if [ "$entry_dir" = "$ODIN_BIN_DIR" ]; then
  ln -sfn "$exporter" "$root$ODIN_ENTRYPOINT"
else
  ln -sfn "$ODIN_BIN_DIR/$exporter" "$root$ODIN_ENTRYPOINT"
fi

# What the binary loads, then what NVML loads through the image's C library: taken from the
# directory the binary's libc.so.6 came from, with what those need in turn.
libs=$(needed_libraries "$binary")
libc=$(grep -m1 '/libc\.so\.6$' <<<"$libs" || true)
extra=""
if [ -n "$libc" ]; then
  for name in $ODIN_NVML_NEEDS; do
    lib="${libc%/*}/$name"
    [ -e "$lib" ] || die "$lib: not found (NVML needs $name from the C library)"
    extra+="$lib"$'\n'"$(needed_libraries "$lib")"$'\n'
  done
fi
while IFS= read -r lib; do
  [ -n "$lib" ] && copy_path "$lib"
done < <(printf '%s\n%s' "$libs" "$extra" | sort -u)

# The user the image runs as, and root (owner of every file), for tools that print names.
mkdir -p "$root/etc"
cat >"$root/etc/passwd" <<EOF
root:x:0:0:root:/root:/sbin/nologin
$ODIN_USER:x:$ODIN_UID:$ODIN_GID:$ODIN_USER:/nonexistent:/sbin/nologin
EOF
cat >"$root/etc/group" <<EOF
root:x:0:
$ODIN_GROUP:x:$ODIN_GID:
EOF
chmod 0644 "$root/etc/passwd" "$root/etc/group"
