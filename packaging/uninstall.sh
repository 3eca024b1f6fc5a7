#!/bin/bash
# `make uninstall`: removes what `make install` recorded in $DATADIR/install-manifest under DESTDIR, and nothing else:
# its files, a configuration file in /etc only while it still has the content installed, then the directories the
# install created, deepest first, each only if it is empty.
set -euo pipefail

: "${DATADIR:?}"
DESTDIR="${DESTDIR:-}"
manifest="$DESTDIR$DATADIR/install-manifest"
[ -f "$manifest" ] || {
    echo "make uninstall: no $manifest: nothing installed with this DESTDIR and PREFIX" >&2
    exit 1
}

dirs=()
removed=0
while read -r kind a b; do
    case "$kind" in
        f)
            case "$a" in /*) ;; *) continue ;; esac
            [ "$a" = "$DATADIR/install-manifest" ] && continue
            rm -f -- "$DESTDIR$a" && removed=$((removed + 1))
            ;;
        c)
            if [ -f "$DESTDIR$b" ] && [ "$(sha256sum <"$DESTDIR$b" | cut -d' ' -f1)" = "$a" ]; then
                rm -f -- "$DESTDIR$b" && removed=$((removed + 1))
            elif [ -e "$DESTDIR$b" ]; then
                echo "make uninstall: $DESTDIR$b was changed since it was installed: kept" >&2
            fi
            ;;
        d) case "$a" in /*) dirs+=("$a") ;; esac ;;
    esac
done <"$manifest"
rm -f -- "$manifest"
# The directories, deepest first (the manifest lists each after its parent).
for ((i = ${#dirs[@]} - 1; i >= 0; i--)); do
    rmdir -- "$DESTDIR${dirs[i]}" 2>/dev/null || true
done
echo "uninstalled: $removed files removed under ${DESTDIR:-/}"
