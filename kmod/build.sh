#!/usr/bin/env bash
# Builds kmod/spindle_netlink.ko against the Debian kernel headers that
# kmod/e2e/fetch.sh unpacked (no installed headers needed). The headers'
# Makefile includes the common tree by an absolute path under /usr/src;
# it is repointed into the unpacked root.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=${ROOT:-$PWD/target/kmod-e2e/root}
bash kmod/e2e/fetch.sh
headers=$(cat "$ROOT/.headers")
KDIR=$ROOT/usr/src/$headers
common=$(sed -n 's|^include /usr/src/\(.*\)/Makefile$|\1|p' "$KDIR/Makefile")
if [ -n "$common" ]; then
    echo "include $ROOT/usr/src/$common/Makefile" > "$KDIR/Makefile"
fi
# Build out of tree in target/, so the source folder stays clean.
OUT=$PWD/target/kmod-e2e/build
mkdir -p "$OUT"
cp kmod/*.c kmod/*.h kmod/Kbuild "$OUT/"
make -s -C "$KDIR" M="$OUT" modules
cp "$OUT/spindle_netlink.ko" target/kmod-e2e/spindle_netlink.ko
echo "kmod: built target/kmod-e2e/spindle_netlink.ko"
