#!/bin/bash
# `make deb`: two Debian packages in .build-pkg/ (OUT), built with dpkg-deb from `make install DESTDIR=… PREFIX=/usr`
# of the built binaries (docs/install.md, "Debian package"):
#   airlock_VERSION_ARCH.deb         stripped binaries, profiles, harness, manual pages, completions, documents,
#                                    systemd units, sysusers.d and tmpfiles.d entries, /etc/airlock/intake.json
#                                    (a conffile); maintainer scripts that apply sysusers/tmpfiles and enable the
#                                    socket only where systemd is present;
#   airlock-dbgsym_VERSION_ARCH.deb  the debug symbols, /usr/lib/debug/.build-id/XX/YYYY.debug, found by gdb through
#                                    the binaries' build ids (and their .gnu_debuglink).
# Builds nothing itself: the binaries come from `make build` (CONFIG=release).
set -euo pipefail

CONFIG="${CONFIG:-release}"
PYTHON="${PYTHON:-/usr/bin/python3}"
OUT="${OUT:-.build-pkg}"
MAKE="${MAKE:-make}"
# xz by default; the packaging test asks for none (packing 40 MB with xz takes a minute on a busy 2-core machine).
DEB_COMPRESS="${DEB_COMPRESS:-xz}"

fail() {
    echo "make deb: $*" >&2
    exit 1
}
for tool in dpkg-deb dpkg-shlibdeps dpkg-architecture objcopy strip readelf; do
    command -v "$tool" >/dev/null || fail "$tool is missing: run \`make deps\` (dpkg-dev, binutils)"
done
[ -x ".build/$CONFIG/airlock" ] || fail ".build/$CONFIG/airlock is missing: run \`make build\` first"

version=$(".build/$CONFIG/airlock" --version)
[[ "$version" =~ ^[0-9][A-Za-z0-9.+~-]*$ ]] || fail "unexpected version '$version' from airlock --version"
arch=$(dpkg-architecture -qDEB_HOST_ARCH)

mkdir -p "$OUT"
OUT=$(realpath "$OUT")
work="$OUT/work"
rm -rf "$work"
root="$work/airlock"
dbg="$work/airlock-dbgsym"
mkdir -p "$root/DEBIAN" "$dbg/DEBIAN"

"$MAKE" --no-print-directory install DESTDIR="$root" PREFIX=/usr CONFIG="$CONFIG" PYTHON="$PYTHON" >/dev/null
# dpkg keeps its own list of the files; `make uninstall`'s manifest has no place in the package.
rm -f "$root/usr/share/airlock/install-manifest"

# Debian's conventions: compressed manual pages, a copyright file in the documentation folder.
gzip -9n "$root"/usr/share/man/man*/*.[18]
{
    echo "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/"
    echo "Upstream-Name: airlock"
    echo
    echo "Files: *"
    echo "Copyright: The Airlock authors"
    echo "License: Apache-2.0"
    echo " On Debian systems the full text of the Apache License 2.0 is in /usr/share/common-licenses/Apache-2.0;"
    echo " it is also /usr/share/doc/airlock/LICENSE."
} >"$root/usr/share/doc/airlock/copyright"

# Debug symbols: each binary's are kept in /usr/lib/debug/.build-id/, then the binary is stripped and linked to them.
for bin in airlock airlockd; do
    path="$root/usr/bin/$bin"
    id=$(readelf -n "$path" | sed -n 's/^ *Build ID: *\([0-9a-f]*\)$/\1/p' | head -1)
    [ ${#id} -ge 4 ] || fail "$bin has no build id (readelf -n): cannot place its debug symbols"
    dir="$dbg/usr/lib/debug/.build-id/${id:0:2}"
    mkdir -p "$dir"
    objcopy --only-keep-debug --compress-debug-sections "$path" "$dir/${id:2}.debug"
    chmod 0644 "$dir/${id:2}.debug"
    strip --strip-unneeded --remove-section=.comment "$path"
    objcopy --add-gnu-debuglink="$dir/${id:2}.debug" "$path"
done

# Depends: the shared libraries airlockd links (airlock is static), from dpkg-shlibdeps, plus the interpreter that
# detonations run (/usr/bin/python3). The consumer's ML libraries are the consumer's choice: Recommends.
mkdir -p "$work/shlibs/debian"
printf 'Source: airlock\n\nPackage: airlock\nArchitecture: any\n' >"$work/shlibs/debian/control"
shlibs=$(cd "$work/shlibs" && dpkg-shlibdeps -O "$root/usr/bin/airlockd" 2>/dev/null |
    sed -n 's/^shlibs:Depends=//p')
[ -n "$shlibs" ] || fail "dpkg-shlibdeps found no dependencies for airlockd"
depends="$shlibs, python3 (>= 3.9)"
size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)

cat >"$root/DEBIAN/control" <<EOF
Package: airlock
Version: $version
Architecture: $arch
Maintainer: The Airlock authors <airlock@localhost>
Installed-Size: $size
Depends: $depends
Recommends: python3-numpy, python3-torch, python3-sklearn, python3-joblib, systemd
Suggests: python3-pandas, python3-dill, python3-cloudpickle
Section: utils
Priority: optional
Description: is this model file safe to load? static analysis and sandboxed detonation
 airlock scans machine-learning model files (pickle, PyTorch, joblib, NumPy,
 safetensors, Keras, ONNX, GGUF, archives, model folders) without loading
 them, and probes them: loads them with the consumer's own Python libraries
 inside a seccomp and namespace sandbox and reports what the loading tried.
 airlockd answers the same questions for other processes on a Unix socket.
EOF

echo "/etc/airlock/intake.json" >"$root/DEBIAN/conffiles"
install -m 0755 packaging/debian/postinst packaging/debian/prerm packaging/debian/postrm "$root/DEBIAN/"
# md5sums, as dpkg-deb's callers (debhelper) write them.
(cd "$root" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | LC_ALL=C sort -z |
    xargs -0 md5sum >DEBIAN/md5sums)

dbgsize=$(du -sk --exclude=DEBIAN "$dbg" | cut -f1)
cat >"$dbg/DEBIAN/control" <<EOF
Package: airlock-dbgsym
Version: $version
Architecture: $arch
Maintainer: The Airlock authors <airlock@localhost>
Installed-Size: $dbgsize
Depends: airlock (= $version)
Section: debug
Priority: optional
Description: debug symbols for airlock
 The separated debug symbols of airlock and airlockd, found by their build ids.
EOF
(cd "$dbg" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | LC_ALL=C sort -z |
    xargs -0 md5sum >DEBIAN/md5sums)

# Files owned by root whatever user builds; no group- or world-writable files from a lax umask.
chmod -R u+rwX,go+rX,go-w "$root" "$dbg"
deb="$OUT/airlock_${version}_${arch}.deb"
dbgdeb="$OUT/airlock-dbgsym_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Z"$DEB_COMPRESS" --build "$root" "$deb" >/dev/null
dpkg-deb --root-owner-group -Z"$DEB_COMPRESS" --build "$dbg" "$dbgdeb" >/dev/null
rm -rf "$work"
echo "$deb"
echo "$dbgdeb"
