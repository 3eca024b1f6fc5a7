#!/bin/bash
# The .deb's install/remove cycle in a throwaway root (PackagingTests runs it; docs/install.md):
#   deb-root.sh AIRLOCK.deb AIRLOCK-DBGSYM.deb
# In a private mount namespace, an overlay of / (its changes kept in a tmpfs) becomes the root (pivot_root, not
# chroot: a chrooted process may not create the user namespaces `airlock exec` needs). /run is an empty tmpfs there,
# so the maintainer scripts see no running systemd, as in a chroot or a container. Inside: dpkg -i, the installed
# files, the release binaries run (scan, probe, exec), dpkg -r, dpkg -P; then the overlay's upper layer, which holds
# every change the cycle made to /, must hold nothing of airlock's. Prints `ok: …` lines; exits non-zero at the first
# failed check with `FAIL: …` on standard error. Needs root.
set -euo pipefail

fail() {
    echo "FAIL: $*" >&2
    exit 1
}

# The checks inside the throwaway root.
checks() {
    local deb="$1" dbgdeb="$2" files
    umount -l /.oldroot || fail "cannot detach the old root"
    [ ! -d /run/systemd/system ] || fail "/run/systemd/system exists: the root is not the throwaway one"
    dpkg -i "$deb" "$dbgdeb" >/tmp/debroot/dpkg-i.log 2>&1 || { cat /tmp/debroot/dpkg-i.log >&2; fail "dpkg -i"; }
    echo "ok: dpkg -i airlock and airlock-dbgsym (dependencies met by the installed system)"
    [ "$(dpkg-query -W -f='${Status}' airlock)" = "install ok installed" ] || fail "airlock is not installed"

    [ "$(/usr/bin/airlock --version)" = "$(dpkg-query -W -f='${Version}' airlock)" ] || fail "airlock --version"
    /usr/bin/airlockd --help >/dev/null || fail "airlockd --help"
    for bin in airlock airlockd; do
        file=$(readelf -S "/usr/bin/$bin" 2>/dev/null)
        grep -q '\.debug_info' <<<"$file" && fail "/usr/bin/$bin is not stripped"
        grep -q '\.gnu_debuglink' <<<"$file" || fail "/usr/bin/$bin has no .gnu_debuglink"
        id=$(readelf -n "/usr/bin/$bin" 2>/dev/null | sed -n 's/^ *Build ID: *\([0-9a-f]*\)$/\1/p')
        debug="/usr/lib/debug/.build-id/${id:0:2}/${id:2}.debug"
        [ -f "$debug" ] || fail "no debug symbols for $bin at $debug"
        # Read whole before grep: `cmd | grep -q` under pipefail fails when grep exits before cmd has written all.
        sections=$(readelf -S "$debug" 2>/dev/null)
        grep -q '\.debug_info' <<<"$sections" || fail "$debug has no .debug_info"
    done
    echo "ok: airlock --version; binaries stripped, debug symbols by build id in airlock-dbgsym"

    for page in airlock airlock.scan airlock.probe airlock.exec airlock.verify airlock.manifest airlock.intake \
        airlock.status; do
        man -w "$page" >/dev/null 2>&1 || fail "man -w $page"
    done
    man -w 8 airlockd >/dev/null 2>&1 || fail "man -w 8 airlockd"
    page=$(zcat /usr/share/man/man1/airlock.scan.1.gz)
    grep -q 'max-entries' <<<"$page" || fail "airlock.scan(1) lacks --max-entries"
    for f in /usr/share/bash-completion/completions/airlock /usr/share/zsh/vendor-completions/_airlock \
        /usr/share/fish/vendor_completions.d/airlock.fish /usr/share/bash-completion/completions/airlockd \
        /usr/share/doc/airlock/LICENSE /usr/share/doc/airlock/copyright /usr/share/doc/airlock/README.md \
        /usr/share/doc/airlock/daemon.md /usr/share/airlock/profiles/default.json \
        /usr/share/airlock/profiles/harness/serve.py /usr/lib/systemd/system/airlockd.socket \
        /usr/lib/sysusers.d/airlock.conf /usr/lib/tmpfiles.d/airlock.conf /etc/airlock/intake.json; do
        [ -s "$f" ] || fail "$f missing or empty"
    done
    [ ! -e /usr/share/airlock/install-manifest ] || fail "the package ships make install's manifest"
    grep -q '^ExecStart=/usr/bin/airlockd$' /usr/lib/systemd/system/airlockd.service || fail "airlockd.service ExecStart"
    grep -hv '^#' /usr/lib/systemd/system/airlock*.service /usr/lib/systemd/system/airlockd.socket |
        grep -q '/usr/local' && fail "a unit still names /usr/local"
    bash -n /usr/share/bash-completion/completions/airlock || fail "the bash completion does not parse"
    echo "ok: manual pages (man -w), completions, documents, profiles, units"

    getent group airlock >/dev/null || fail "group airlock not created"
    [ "$(id -gn airlock-intake 2>/dev/null)" = airlock ] || fail "user airlock-intake not created in group airlock"
    [ "$(stat -c %U:%G:%a /var/lib/airlock/intake/incoming)" = airlock-intake:airlock:2770 ] ||
        fail "tmpfiles.d not applied: /var/lib/airlock/intake/incoming"
    [ -d /run/airlock ] || fail "/run/airlock not created"
    [ -L /etc/systemd/system/sockets.target.wants/airlockd.socket ] || fail "airlockd.socket not enabled"
    echo "ok: postinst without systemd running: sysusers, tmpfiles, airlockd.socket enabled"

    # Release-binary smoke test: the installed binaries, run as users run them.
    cd /tmp/debroot
    printf '\x80\x02}q\x00X\x01\x00\x00\x00aq\x01K\x01s.' >benign.pkl
    printf 'cposix\nsystem\n(Vtouch /tmp/debroot/pwned\ntR.' >evil.pkl
    /usr/bin/airlock scan benign.pkl >scan-benign.txt || fail "airlock scan benign.pkl: $(cat scan-benign.txt)"
    set +e
    /usr/bin/airlock scan --format json evil.pkl >scan-evil.json
    status=$?
    set -e
    [ $status -eq 1 ] && grep -q '"malicious"' scan-evil.json || fail "airlock scan evil.pkl: exit $status"
    echo "ok: airlock scan: a benign pickle exit 0, an os.system pickle malicious, exit 1"
    /usr/bin/airlock exec --timeout 20 -- /bin/true >exec.txt 2>&1 || fail "airlock exec -- /bin/true: $(cat exec.txt)"
    echo "ok: airlock exec -- /bin/true (sandbox: namespaces, seccomp, the installed profile)"
    set +e
    /usr/bin/airlock probe --format json evil.pkl >probe-evil.json 2>probe-evil.err
    status=$?
    set -e
    [ $status -eq 1 ] && grep -q '"malicious"' probe-evil.json ||
        fail "airlock probe evil.pkl: exit $status: $(head -c 2000 probe-evil.err)"
    [ ! -e /tmp/debroot/pwned ] || fail "the payload ran outside the sandbox"
    grep -q '"dynamic' probe-evil.json || fail "airlock probe evil.pkl: no dynamic finding (no detonation?)"
    echo "ok: airlock probe evil.pkl: detonated with the installed harness, malicious, exit 1"

    # Installing again over itself (an upgrade's path through the scripts), with the policy edited by the operator:
    # no prompt, no failure, the edit kept (a conffile).
    echo '{"pass": ["clean"], "settleSeconds": 5}' >/etc/airlock/intake.json
    dpkg -i --force-confold "$deb" >/tmp/debroot/dpkg-i2.log 2>&1 </dev/null ||
        { cat /tmp/debroot/dpkg-i2.log >&2; fail "dpkg -i over the installed package"; }
    grep -q '"settleSeconds": 5' /etc/airlock/intake.json || fail "reinstalling replaced the edited conffile"
    echo "ok: dpkg -i again over the installed package (the edited conffile kept)"

    files=$(dpkg -L airlock airlock-dbgsym)
    dpkg -r airlock-dbgsym airlock >/tmp/debroot/dpkg-r.log 2>&1 || { cat /tmp/debroot/dpkg-r.log >&2; fail "dpkg -r"; }
    [ -e /usr/bin/airlock ] && fail "/usr/bin/airlock left after dpkg -r"
    [ -f /etc/airlock/intake.json ] || fail "dpkg -r removed the conffile (only purge may)"
    echo "ok: dpkg -r (the conffile kept)"
    dpkg -P airlock-dbgsym airlock >/tmp/debroot/dpkg-p.log 2>&1 || { cat /tmp/debroot/dpkg-p.log >&2; fail "dpkg -P"; }
    while read -r f; do
        [ -n "$f" ] || continue
        case "$f" in /. | /etc | /etc/airlock | /etc/airlock/* | /usr | /usr/*) ;; *) fail "unexpected path in the package: $f" ;; esac
        if [ -f "$f" ] || [ -L "$f" ]; then fail "$f left after dpkg -P"; fi
    done <<<"$files"
    for d in /etc/airlock /var/lib/airlock /run/airlock /usr/share/airlock /usr/share/doc/airlock /var/cache/airlock; do
        [ ! -e "$d" ] || fail "$d left after dpkg -P"
    done
    [ ! -e /etc/systemd/system/sockets.target.wants/airlockd.socket ] || fail "the socket's enablement left"
    echo "ok: dpkg -P"
}

if [ "${1:-}" = "--checks" ]; then
    checks "$2" "$3"
    exit 0
fi
if [ "${1:-}" != "--inside" ]; then
    deb=$(realpath "$1")
    dbgdeb=$(realpath "$2")
    exec unshare --mount --propagation private -- "$0" --inside "$deb" "$dbgdeb"
fi
deb="$2"
dbgdeb="$3"

top=$(mktemp -d /tmp/airlock-debroot.XXXXXX)
trap 'cd /; umount -R "$top" 2>/dev/null || umount -l "$top" 2>/dev/null; rmdir "$top" 2>/dev/null || true' EXIT
mount -t tmpfs -o size=2g,mode=0755 airlock-debroot "$top"
mkdir "$top/upper" "$top/work" "$top/root"
mount -t overlay overlay -o "lowerdir=/,upperdir=$top/upper,workdir=$top/work" "$top/root"
root="$top/root"
mount --rbind /proc "$root/proc"
mount --rbind /dev "$root/dev"
mount --rbind /sys "$root/sys"
mount -t tmpfs -o mode=0755 run "$root/run"
mkdir -p "$root/tmp/debroot" "$root/.oldroot"
cp "$deb" "$dbgdeb" "$root/tmp/debroot/"
cp "$0" "$root/tmp/debroot/deb-root.sh"

# The checks run with the overlay as / (in a mount namespace of their own, so that this one keeps its root).
unshare --mount --propagation private -- /bin/bash -c 'cd "$1" && pivot_root . .oldroot && cd / &&
    exec env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 /bin/bash /tmp/debroot/deb-root.sh \
        --checks "$2" "$3"' checks "$root" "/tmp/debroot/$(basename "$deb")" "/tmp/debroot/$(basename "$dbgdeb")"

# The upper layer: every file the cycle created or changed. Nothing of airlock's may be left; what dpkg itself keeps
# (its database and log), the users sysusers created (/etc/passwd, group, shadow, gshadow and their backups), the
# test's own files and the mount points are expected. Whiteouts (character devices) are deletions of what the host
# had: the purge removes the digest cache, /var/cache/airlock, which a root user's runs on the host may have made.
left=$(cd "$top/upper" && find . -mindepth 1 \( -path ./tmp -o -path ./.oldroot -o -path ./var/lib/dpkg \
    -o -path ./var/log \) -prune -o ! -type c -print | grep -i airlock || true)
[ -z "$left" ] || fail "left after dpkg -P: $left"
echo "ok: nothing of airlock's left in the root after dpkg -P"
