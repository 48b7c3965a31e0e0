#!/usr/bin/env bash
# `make kmod-e2e`: the kernel module and the daemon together in a real Linux
# kernel under qemu (TCG, no KVM). Fetches Debian's kernel, headers, qemu
# and busybox without installing them (fetch.sh), builds the module
# (../build.sh), packs an initramfs with the module, `spindle`, its
# libraries, ONNX Runtime and one model, boots it, runs scenarios.sh, and
# passes when every scenario passed. The guest's console is kept in
# target/kmod-e2e/console.log.
set -euo pipefail
cd "$(dirname "$0")/../.."
started=$(date +%s)
ROOT=$PWD/target/kmod-e2e/root
OUT=$PWD/target/kmod-e2e
MODEL=paraphrase-MiniLM-L3-v2
ORT_VERSION=1.31.1

bash kmod/e2e/fetch.sh
bash kmod/build.sh

# The daemon: the test build (`make kmod-e2e` passes it; set SPINDLE_BIN to
# use another). Its dependencies are optimised (Cargo.toml's dev profile):
# with everything unoptimised, the first embedding missed a 120 s deadline
# under TCG.
SPINDLE_BIN=${SPINDLE_BIN:-}
if [ -z "$SPINDLE_BIN" ]; then
    cargo build --bin spindle --quiet
    SPINDLE_BIN=${CARGO_TARGET_DIR:-target}/debug/spindle
fi

if [ -n "${SPINDLE_CACHE:-}" ]; then cache=$SPINDLE_CACHE
elif [ -n "${XDG_CACHE_HOME:-}" ]; then cache=$XDG_CACHE_HOME/spindle
else cache=$HOME/.cache/spindle; fi
runtime=$cache/onnxruntime/$ORT_VERSION/cpu
if [ ! -e "$cache/models/$MODEL/model.onnx" ] || [ ! -d "$runtime" ]; then
    echo "kmod-e2e: $MODEL or ONNX Runtime $ORT_VERSION is not in $cache; run \`make setup\` first" >&2
    exit 1
fi

# The initramfs.
fs=$OUT/initramfs
rm -rf "$fs"
mkdir -p "$fs"/{bin,e2e,proc,sys,dev,tmp,cache/spindle/models,cache/spindle/onnxruntime/$ORT_VERSION}
cp "$ROOT/bin/busybox" "$fs/bin/busybox"
cp kmod/e2e/init.sh "$fs/init"
chmod +x "$fs/init"
cp kmod/e2e/scenarios.sh kmod/e2e/kernel.lua kmod/e2e/noop.lua "$OUT/spindle_netlink.ko" "$fs/e2e/"
strip -o "$fs/e2e/spindle" "$SPINDLE_BIN"
cp -r "$cache/models/$MODEL" "$fs/cache/spindle/models/"
cp -r "$runtime" "$fs/cache/spindle/onnxruntime/$ORT_VERSION/"
for binary in "$fs/e2e/spindle" "$runtime"/*.so*; do
    ldd "$binary" | awk '/=>/ { print $3 } /^\t\/lib/ { print $1 }'
done | sort -u | while read -r library; do
    [ -e "$library" ] || continue
    mkdir -p "$fs$(dirname "$library")"
    cp -L "$library" "$fs$library"
done
(cd "$fs" && find . | "$ROOT/bin/busybox" cpio -o -H newc 2>/dev/null) > "$OUT/initramfs.cpio"
echo "kmod-e2e: initramfs $(du -m "$OUT/initramfs.cpio" | cut -f1) MiB, prepared in $(( $(date +%s) - started )) s"

image=$(cat "$ROOT/.image")
kernel=$ROOT/boot/vmlinuz-${image#linux-image-}
libs=$ROOT/usr/lib/x86_64-linux-gnu:$ROOT/lib/x86_64-linux-gnu
booted=$(date +%s)
# -cpu qemu64 (SSE2 only): TCG emulates AVX2/FMA code about 15 times
# slower than SSE code, which is what ONNX Runtime then picks (measured:
# two short sentences took 1.1 s with qemu64, 17-21 s with max or Haswell).
set +e
LD_LIBRARY_PATH=$libs timeout 540 "$ROOT/usr/bin/qemu-system-x86_64" \
    -L "$ROOT/usr/share/qemu" -L "$ROOT/usr/share/seabios" \
    -machine pc -accel tcg -cpu qemu64 -smp 1 -m 2048 \
    -nographic -no-reboot -monitor none -serial stdio \
    -kernel "$kernel" -initrd "$OUT/initramfs.cpio" \
    -append "console=ttyS0 quiet panic=-1 rdinit=/init" < /dev/null | tee "$OUT/console.log"
qemu_status=${PIPESTATUS[0]}
set -e
echo "kmod-e2e: qemu ran $(( $(date +%s) - booted )) s (status $qemu_status); total $(( $(date +%s) - started )) s"
summary=$(grep -a "^kmod-e2e: [0-9]* passed, [0-9]* failed" "$OUT/console.log" | tail -1 | tr -d '\r')
if [ -z "$summary" ]; then
    echo "kmod-e2e: the guest did not finish (see $OUT/console.log)" >&2
    exit 1
fi
echo "$summary"
case "$summary" in
    *", 0 failed") exit 0 ;;
    *) exit 1 ;;
esac
