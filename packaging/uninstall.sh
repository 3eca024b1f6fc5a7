#!/bin/bash
# `make uninstall`: removes what `make install` recorded in $DATADIR/install-manifest under DESTDIR, and nothing else:
# its files, a configuration file in /etc only while it still has the content installed, then the directories the
# install created, deepest first, each only if it is empty. A manifest line naming a path outside the installation's
# directories (the ones the Makefile passes, as for install), or with a `..` component, is refused, not followed.
set -euo pipefail

: "${DATADIR:?}"
DESTDIR="${DESTDIR:-}"
manifest="$DESTDIR$DATADIR/install-manifest"
[ -f "$manifest" ] || {
    echo "make uninstall: no $manifest: nothing installed with this DESTDIR and PREFIX" >&2
    exit 1
}

# Where install writes files: each file recorded must be below one of these.
roots=()
for dir in "${BINDIR:-}" "$DATADIR" "${MANDIR:-}" "${DOCDIR:-}" "${BASHCOMPDIR:-}" "${ZSHCOMPDIR:-}" \
    "${FISHCOMPDIR:-}" "${SYSTEMD_UNITDIR:-}" "${SYSUSERSDIR:-}" "${TMPFILESDIR:-}"; do
    [ -n "$dir" ] && roots+=("$dir/")
done
[ -n "${SYSCONFDIR:-}" ] && roots+=("$SYSCONFDIR/airlock/")

# DESTDIR itself resolved (a symlink to the staging tree is fine); every path below it must resolve to itself.
realdest=""
if [ -n "$DESTDIR" ]; then
    realdest=$(realpath -e -- "$DESTDIR") || {
        echo "make uninstall: DESTDIR $DESTDIR does not exist" >&2
        exit 1
    }
    [ "$realdest" = / ] && realdest=""
fi

# Whether a recorded path is one this uninstall may remove: a file below one of the roots, a directory a root, below
# one or one of a root's parents (install records the parents it created; only empty ones are removed); without
# `.`/`..` components; and with no symbolic link among its parent directories under DESTDIR (a linked directory would
# lead the removal outside the installation).
acceptable() {
    local path="$1" kind="$2" root parent real expected below=1
    case "$path" in /*) ;; *) return 1 ;; esac
    case "/$path/" in */../* | */./*) return 1 ;; esac
    case "$path" in *//*) return 1 ;; esac
    for root in "${roots[@]}"; do
        case "$path" in "$root"?*) below=0 ;; esac
        if [ "$kind" = d ]; then
            case "$root" in "$path/"*) below=0 ;; esac
        fi
    done
    [ "$below" = 0 ] || return 1
    parent=$(dirname -- "$path")
    expected="$realdest$parent"
    [ "$parent" = / ] && expected="${realdest:-/}"
    # A parent that no longer exists: nothing to remove there.
    real=$(realpath -e -- "$DESTDIR$parent" 2>/dev/null) || return 0
    [ "$real" = "$expected" ]
}

dirs=()
removed=0
while IFS= read -r line; do
    kind="${line%% *}"
    path="${line#* }"
    hash=""
    if [ "$kind" = c ]; then
        hash="${path%% *}"
        path="${path#* }"
    fi
    if ! acceptable "$path" "$kind"; then
        echo "make uninstall: $manifest names '$path', outside the installation or through a symbolic link: not removed" >&2
        continue
    fi
    case "$kind" in
        f)
            [ "$path" = "$DATADIR/install-manifest" ] && continue
            if [ -f "$DESTDIR$path" ] || [ -L "$DESTDIR$path" ]; then
                rm -f -- "$DESTDIR$path"
                removed=$((removed + 1))
            fi
            ;;
        c)
            if [ -f "$DESTDIR$path" ] && [ "$(sha256sum <"$DESTDIR$path" | cut -d' ' -f1)" = "$hash" ]; then
                rm -f -- "$DESTDIR$path"
                removed=$((removed + 1))
            elif [ -e "$DESTDIR$path" ]; then
                echo "make uninstall: $DESTDIR$path was changed since it was installed: kept" >&2
            fi
            ;;
        d) dirs+=("$path") ;;
    esac
done <"$manifest"
rm -f -- "$manifest"
# The directories, deepest first (the manifest lists each after its parent).
for ((i = ${#dirs[@]} - 1; i >= 0; i--)); do
    rmdir -- "$DESTDIR${dirs[i]}" 2>/dev/null || true
done
echo "uninstalled: $removed files removed under ${DESTDIR:-/}"
