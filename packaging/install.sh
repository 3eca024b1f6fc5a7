#!/bin/bash
# `make install`: copies what `make build` made (and the repository's data files) under DESTDIR, in the directories
# the Makefile passes in the environment (docs/install.md lists them). Builds nothing: a missing binary or manual
# generator stops it, naming `make build`.
#
# Every file written and every directory created is recorded, as its path without DESTDIR, in
# $DATADIR/install-manifest, which `make uninstall` (packaging/uninstall.sh) reads to remove exactly those.
# Lines: `f PATH` a file, `d PATH` a directory this install created, `c SHA256 PATH` a configuration file in /etc
# written because none was there (removed by uninstall only while it still has that content).
set -euo pipefail
# Whatever the caller's umask: directories 0755, files as `install -m` says (compileall's __pycache__ and the parents
# `install -d` creates take the umask).
umask 022

: "${PREFIX:?}" "${BINDIR:?}" "${DATADIR:?}" "${MANDIR:?}" "${DOCDIR:?}" "${BASHCOMPDIR:?}" "${ZSHCOMPDIR:?}"
: "${FISHCOMPDIR:?}" "${SYSTEMD_UNITDIR:?}" "${SYSUSERSDIR:?}" "${TMPFILESDIR:?}" "${CONFIG:?}" "${PYTHON:?}"
DESTDIR="${DESTDIR:-}"
SYSCONFDIR="${SYSCONFDIR:-}"
GENERATE_MANUAL="${GENERATE_MANUAL:-.build/$CONFIG/generate-manual}"

fail() {
    echo "make install: $*" >&2
    exit 1
}

case "$PREFIX" in
    /*) ;;
    *) fail "PREFIX must be an absolute path (got '$PREFIX')" ;;
esac
# PREFIX, BINDIR and DOCDIR are written into the systemd units (sed replacement text, ExecStart= and Documentation=
# lines, where systemd expands `%` specifiers and splits at spaces): only plain path characters.
for var in PREFIX BINDIR DOCDIR; do
    case "${!var}" in
        *[!A-Za-z0-9/._+@-]*) fail "$var must contain only letters, digits and / . _ + @ - (got '${!var}'): it is written into the systemd units" ;;
    esac
done
for built in ".build/$CONFIG/airlock" ".build/$CONFIG/airlockd" "$GENERATE_MANUAL"; do
    [ -x "$built" ] || fail "$built is missing: run \`make build\` first (CONFIG=$CONFIG)"
done
[ -f "$DESTDIR$DATADIR/install-manifest" ] &&
    fail "$DESTDIR$DATADIR/install-manifest exists: Airlock is installed there already; run \`make uninstall\` first"

case "$PREFIX/" in /home/* | /root/* | /tmp/* | /var/tmp/* | /run/user/*)
    echo "make install: warning: airlockd.service has ProtectHome=yes and PrivateTmp=yes: it cannot start $BINDIR/airlockd" >&2
    ;;
esac

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
manifest="$scratch/manifest"
: >"$manifest"

# Creates a directory and its missing parents, recording each one created (outermost first).
make_dir() {
    local dir="$1" missing=() d="$1"
    while [ -n "$d" ] && [ "$d" != "/" ] && [ ! -e "$DESTDIR$d" ]; do
        missing=("$d" "${missing[@]}")
        d=$(dirname "$d")
    done
    install -d -m 0755 "$DESTDIR$dir"
    for d in "${missing[@]}"; do echo "d $d" >>"$manifest"; done
}

# put MODE SOURCE TARGET: one file, recorded.
put() {
    make_dir "$(dirname "$3")"
    install -m "$1" "$2" "$DESTDIR$3"
    echo "f $3" >>"$manifest"
}

# put_text MODE TARGET < content
put_text() {
    cat >"$scratch/text"
    put "$1" "$scratch/text" "$2"
}

# Binaries.
put 0755 ".build/$CONFIG/airlock" "$BINDIR/airlock"
put 0755 ".build/$CONFIG/airlockd" "$BINDIR/airlockd"

# Profiles, verdict policy and the loader harness, where the binaries look for them: share/airlock/profiles beside
# their bin/ (ProfileLocator.searchDirectories).
for f in Profiles/*.json; do put 0644 "$f" "$DATADIR/profiles/${f#Profiles/}"; done
for f in Profiles/harness/*.py; do put 0644 "$f" "$DATADIR/profiles/harness/${f#Profiles/harness/}"; done
"$PYTHON" -m compileall -q --invalidation-mode checked-hash "$DESTDIR$DATADIR/profiles/harness"
if [ -d "$DESTDIR$DATADIR/profiles/harness/__pycache__" ]; then
    chmod 0755 "$DESTDIR$DATADIR/profiles/harness/__pycache__"
    chmod 0644 "$DESTDIR$DATADIR/profiles/harness/__pycache__"/*.pyc
    echo "d $DATADIR/profiles/harness/__pycache__" >>"$manifest"
    for f in "$DESTDIR$DATADIR/profiles/harness/__pycache__"/*.pyc; do echo "f ${f#"$DESTDIR"}" >>"$manifest"; done
fi

# Manual pages, generated from the built binaries' own help (swift-argument-parser's generate-manual): one page per
# command and subcommand (`airlock.scan.1`, `man airlock.scan`; the `help` pages too: the others refer to them). The
# date is $SOURCE_DATE_EPOCH's or the last commit's, so the pages do not change between builds of one commit.
if [ -n "${SOURCE_DATE_EPOCH:-}" ]; then
    date=$(date -u -d "@$SOURCE_DATE_EPOCH" +%F)
else
    date=$(git log -1 --format=%cs 2>/dev/null || date -u +%F)
fi
mkdir -p "$scratch/man"
"$GENERATE_MANUAL" ".build/$CONFIG/airlock" --multi-page --section 1 --date "$date" \
    --authors "The Airlock authors" --output-directory "$scratch/man"
"$GENERATE_MANUAL" ".build/$CONFIG/airlockd" --multi-page --section 8 --date "$date" \
    --authors "The Airlock authors" --output-directory "$scratch/man"
# An empty line is not mdoc (the discussions' paragraph breaks): a paragraph macro instead.
sed -i 's/^[[:space:]]*$/.Pp/' "$scratch/man"/*.[18]
for page in "$scratch/man"/*.1; do put 0644 "$page" "$MANDIR/man1/$(basename "$page")"; done
for page in "$scratch/man"/*.8; do put 0644 "$page" "$MANDIR/man8/$(basename "$page")"; done

# Shell completions, from the binaries.
for tool in airlock airlockd; do
    ".build/$CONFIG/$tool" --generate-completion-script bash | put_text 0644 "$BASHCOMPDIR/$tool"
    ".build/$CONFIG/$tool" --generate-completion-script zsh | put_text 0644 "$ZSHCOMPDIR/_$tool"
    ".build/$CONFIG/$tool" --generate-completion-script fish | put_text 0644 "$FISHCOMPDIR/$tool.fish"
done

# Documents: the licence, the README and every document in docs/ (with the JSON schemas they refer to).
put 0644 LICENSE "$DOCDIR/LICENSE"
put 0644 README.md "$DOCDIR/README.md"
for f in docs/*.md docs/*.json; do put 0644 "$f" "$DOCDIR/${f#docs/}"; done
put 0644 systemd/README.md "$DOCDIR/systemd.md"

# systemd: units with /usr/local/ rewritten to this PREFIX's directories, sysusers.d and tmpfiles.d entries.
for unit in airlockd.service airlockd.socket airlock-intake.service airlock-intake@.service; do
    sed -e "s|/usr/local/bin/|$BINDIR/|g" -e "s|/usr/local/share/doc/airlock/|$DOCDIR/|g" \
        -e "s|/usr/local/|$PREFIX/|g" "systemd/$unit" | put_text 0644 "$SYSTEMD_UNITDIR/$unit"
done
put 0644 systemd/sysusers.d/airlock.conf "$SYSUSERSDIR/airlock.conf"
put 0644 systemd/tmpfiles.d/airlock.conf "$TMPFILESDIR/airlock.conf"

# /etc, only for PREFIX /usr or /usr/local (the Makefile leaves SYSCONFDIR empty otherwise): the intake's policy,
# the defaults written out, and only when there is none (an operator's policy is never replaced).
if [ -n "$SYSCONFDIR" ]; then
    policy="$SYSCONFDIR/airlock/intake.json"
    if [ -e "$DESTDIR$policy" ]; then
        echo "make install: $DESTDIR$policy exists: kept as it is" >&2
    else
        make_dir "$SYSCONFDIR/airlock"
        install -m 0644 packaging/intake.json "$DESTDIR$policy"
        echo "c $(sha256sum <packaging/intake.json | cut -d' ' -f1) $policy" >>"$manifest"
    fi
fi

make_dir "$DATADIR"
echo "f $DATADIR/install-manifest" >>"$manifest"
install -m 0644 "$manifest" "$DESTDIR$DATADIR/install-manifest"

echo "installed under ${DESTDIR}${PREFIX} ($(grep -c '^[fc] ' "$manifest") files; list: $DATADIR/install-manifest)."
echo "To run airlockd under systemd (docs/daemon.md):"
echo "  systemd-sysusers && systemd-tmpfiles --create && systemctl daemon-reload && systemctl enable --now airlockd.socket"
echo "and the intake (docs/intake.md): write its policy (/etc/airlock/intake.json), then systemctl enable --now airlock-intake.service"
