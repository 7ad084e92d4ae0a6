#!/bin/sh
# Writes a placeholder source file for every target of the workspace's
# manifests that does not exist yet, so that `cargo build` can compile the
# dependencies before the real sources are copied in: the Docker image's
# dependency layer, rebuilt only when a manifest or Cargo.lock changes.
# Run from the workspace root; POSIX sh and awk only.
set -eu

# Prints the source path of each [[bin]], [[bench]], [[test]] and [[example]]
# of one manifest: its `path`, or the path cargo infers from its `name`.
targets() {
    awk '
        function flush() {
            if (kind != "") {
                if (path == "" && name != "") {
                    dir = (kind == "bin") ? "src/bin" : (kind == "bench") ? "benches" : (kind == "test") ? "tests" : "examples"
                    path = dir "/" name ".rs"
                }
                if (path != "") print path
            }
            kind = ""; name = ""; path = ""
        }
        /^\[\[(bin|bench|test|example)\]\]/ { flush(); kind = $0; gsub(/[\[\] \t]/, "", kind); next }
        /^\[/ { flush(); next }
        kind != "" && /^[ \t]*(name|path)[ \t]*=/ {
            value = $0
            sub(/^[^=]*=[ \t]*"/, "", value)
            sub(/".*$/, "", value)
            if ($0 ~ /^[ \t]*name/) name = value; else path = value
        }
        END { flush() }
    ' "$1"
}

for manifest in Cargo.toml */Cargo.toml; do
    [ -f "$manifest" ] || continue
    dir=$(dirname "$manifest")
    for file in src/lib.rs $(targets "$manifest"); do
        [ -e "$dir/$file" ] && continue
        mkdir -p "$(dirname "$dir/$file")"
        case "$file" in
            src/lib.rs) : > "$dir/$file" ;;
            *) echo 'fn main() {}' > "$dir/$file" ;;
        esac
    done
done
