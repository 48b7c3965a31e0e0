#!/usr/bin/env bash
# Fetches what the kernel-module end-to-end test needs, without installing
# anything: Debian's kernel image and headers (6.1), the kbuild tools the
# headers point at, qemu and its libraries that this machine lacks, and a
# static busybox. Packages are fetched with `apt-get download` and unpacked
# with `dpkg-deb -x` under $ROOT (default target/kmod-e2e/root).
# Idempotent: a second run with everything present does nothing.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=${ROOT:-$PWD/target/kmod-e2e/root}
DEBS=${DEBS:-$PWD/target/kmod-e2e/debs}
mkdir -p "$ROOT" "$DEBS"

if [ -e "$ROOT/.fetched" ]; then
    exit 0
fi

# apt's lists may be missing on a fresh machine.
if ! apt-cache show linux-image-amd64 >/dev/null 2>&1; then
    apt-get update -qq
fi

# The metapackages name the versioned packages.
image=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-/{print $2; exit}')
headers=$(apt-cache depends linux-headers-amd64 | awk '/Depends: linux-headers-/{print $2; exit}')
common=$(apt-cache depends "$headers" | awk '/Depends: linux-headers-.*-common/{print $2; exit}')
kbuild=$(apt-cache depends "$headers" | awk '/Depends: linux-kbuild-/{print $2; exit}')
packages=("$image" "$headers" "$common" "$kbuild" qemu-system-x86 qemu-system-common qemu-system-data seabios ipxe-qemu busybox-static)

# qemu's shared libraries that are not installed here (and their own).
missing_libraries() {
    local package=$1
    apt-cache depends "$package" | awk '/^  Depends: lib/{print $2}' | while read -r dependency; do
        dependency=${dependency#<}
        dependency=${dependency%>}
        if ! dpkg-query -W -f='${Status}' "$dependency" 2>/dev/null | grep -q "ok installed"; then
            echo "$dependency"
        fi
    done
}
libraries=$(missing_libraries qemu-system-x86 | sort -u)
for library in $libraries; do
    packages+=("$library")
    packages+=($(missing_libraries "$library"))
done

cd "$DEBS"
for package in $(printf '%s\n' "${packages[@]}" | sort -u); do
    if ! ls "${package}"_*.deb >/dev/null 2>&1; then
        apt-get -o APT::Sandbox::User=root download -qq "$package"
    fi
done
for deb in *.deb; do
    dpkg-deb -x "$deb" "$ROOT"
done
echo "$image" > "$ROOT/.image"
echo "$headers" > "$ROOT/.headers"
touch "$ROOT/.fetched"
echo "kmod-e2e: fetched $(ls "$DEBS" | wc -l) packages into $ROOT"
