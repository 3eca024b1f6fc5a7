#!/usr/bin/env bash
# `make lint`: no Swift file over 600 lines, except the pickle machine and the ZIP reader, or a file that is one concept
# read top to bottom and says so in its opening comment (the words "read top to bottom" within its first 10 lines).
# A file that grows past the limit is a sign it holds two concerns: split it by concern (HACKING.md).
set -euo pipefail
cd "$(dirname "$0")/../.."
limit=600
exempt=" Sources/AirlockFormats/Pickle/PickleMachine.swift Sources/AirlockFormats/Zip/ZipArchive.swift "
failed=0
while IFS= read -r file; do
    lines=$(wc -l <"$file")
    [ "$lines" -le "$limit" ] && continue
    case "$exempt" in *" $file "*) continue ;; esac
    head -n 10 "$file" | grep -q "read top to bottom" && continue
    echo "lint: $file has $lines lines (limit $limit): split it by concern, or say in its opening comment that it is one concept read top to bottom" >&2
    failed=1
done < <(find Sources Tests -name '*.swift' -not -path '*/.build*' | sort)
exit "$failed"
