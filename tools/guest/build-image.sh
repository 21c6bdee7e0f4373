#!/usr/bin/env bash
# Builds the guest image `make guest` boots: Debian 12's kernel (uncompressed, so that QEMU can
# start it through its PVH entry point) and an initramfs with busybox-static, pciutils' lspci
# and its libraries, our guest program and the init script. Everything comes from Debian
# packages (`apt-get download` + `dpkg-deb -x`, nothing installed on the host apart from
# cpio/pciutils when missing) and is cached under .build/guest/; nothing is committed.
#
# usage: tools/guest/build-image.sh OUTDIR      (prints the paths of vmlinux and initramfs)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:?usage: build-image.sh OUTDIR}
mkdir -p "$out"
out=$(cd "$out" && pwd)
dl="$out/debs"
mkdir -p "$dl"

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
need_host() {   # command package
    command -v "$1" >/dev/null 2>&1 && return 0
    echo "guest-image: installing $2" >&2
    as_root apt-get update -qq && as_root apt-get install -y -qq "$2" >/dev/null
}
need_host cpio cpio
need_host lspci pciutils
need_host xz xz-utils
need_host cc gcc

# apt-get download writes into the current directory; as root it warns that _apt cannot
# write there (harmless), so keep its stderr out unless it fails.
fetch() {   # package -> path of the .deb
    local pkg=$1 deb
    deb=$(ls "$dl"/"${pkg}"_*.deb 2>/dev/null | head -1 || true)
    if [ -z "$deb" ]; then
        (cd "$dl" && apt-get download "$pkg" >/dev/null 2>"$dl/$pkg.err") || {
            # A machine whose package lists were never fetched: update once, then retry.
            as_root apt-get update -qq
            (cd "$dl" && apt-get download "$pkg" >/dev/null 2>"$dl/$pkg.err") || { cat "$dl/$pkg.err" >&2; exit 1; }
        }
        deb=$(ls "$dl"/"${pkg}"_*.deb | head -1)
    fi
    echo "$deb"
}

# --- the kernel: the package linux-image-amd64 depends on, unpacked, then decompressed -------
if [ ! -s "$out/vmlinux" ]; then
    meta=$(fetch linux-image-amd64)
    kpkg=$(dpkg-deb -f "$meta" Depends | grep -o 'linux-image-[0-9][^ ,]*' | head -1)
    [ -n "$kpkg" ] || { echo "guest-image: cannot tell which kernel linux-image-amd64 depends on" >&2; exit 1; }
    kdeb=$(fetch "$kpkg")
    rm -rf "$out/kernel" && mkdir -p "$out/kernel"
    dpkg-deb -x "$kdeb" "$out/kernel"
    vmlinuz=$(ls "$out"/kernel/boot/vmlinuz-* | head -1)
    # The bzImage holds the kernel as an xz stream: find its magic and decompress from there
    # (the trailing bytes after the stream make xz complain; the ELF check below decides).
    offset=$(LC_ALL=C grep -obaP '\xfd7zXZ\x00' "$vmlinuz" | head -1 | cut -d: -f1)
    [ -n "$offset" ] || { echo "guest-image: no xz stream in $vmlinuz" >&2; exit 1; }
    tail -c +$((offset + 1)) "$vmlinuz" | xz -dc > "$out/vmlinux.tmp" 2>/dev/null || true
    [ "$(head -c 4 "$out/vmlinux.tmp" | od -An -tx1 | tr -d ' ')" = 7f454c46 ] || { echo "guest-image: decompressed kernel is not an ELF file" >&2; exit 1; }
    mv "$out/vmlinux.tmp" "$out/vmlinux"
    basename "$kdeb" > "$out/kernel-package"
    rm -rf "$out/kernel/lib"   # the guest needs no modules (sysfs resource files, built-in serial)
fi

# --- the initramfs ----------------------------------------------------------------------------
root="$out/rootfs"
rm -rf "$root"
mkdir -p "$root"/{bin,sbin,dev,proc,sys,tmp,usr/share/misc,lib64,lib/x86_64-linux-gnu}
bb=$(fetch busybox-static)
rm -rf "$out/busybox" && mkdir -p "$out/busybox" && dpkg-deb -x "$bb" "$out/busybox"
cp "$out/busybox/bin/busybox" "$root/bin/busybox"
for applet in sh mount poweroff cat echo ls sleep dmesg grep head tail mkdir; do ln -sf busybox "$root/bin/$applet"; done

# lspci from the host's pciutils with every library it loads, and the ID database.
lspci_bin=$(command -v lspci)
cp "$lspci_bin" "$root/bin/lspci"
for lib in $(ldd "$lspci_bin" | grep -o '/[^ ]*' | sort -u); do
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
done
for ids in /usr/share/misc/pci.ids /usr/share/hwdata/pci.ids; do
    [ -f "$ids" ] && { cp -L "$ids" "$root/usr/share/misc/pci.ids"; break; }
done

# Our guest program, static, built with the system C compiler.
cc -O2 -static -Wall -Wextra -o "$root/bin/ivshmem2-guest" "$here/guest.c"
install -m 0755 "$here/init" "$root/init"

(cd "$root" && find . -print0 | cpio --null -o -H newc --quiet) > "$out/initramfs.cpio"
echo "$out/vmlinux"
echo "$out/initramfs.cpio"
