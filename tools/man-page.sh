#!/usr/bin/env bash
# Writes the ivshmem2(1) man page to stdout: with swift-argument-parser's generate-manual plugin
# when SwiftPM can run it (it needs no network once the package's dependencies are resolved),
# otherwise from the tool's own --help text (every subcommand's), so `make install` never
# lacks a man page.  usage: man-page.sh PATH-TO-IVSHMEM2 [debug|release]
set -euo pipefail
tool=$1
config=${2:-release}
out=.build/plugins/GenerateManual/outputs/ivshmem2/ivshmem2.1
if swift package plugin --allow-writing-to-package-directory generate-manual --configuration "$config" >/dev/null 2>&1 && [ -s "$out" ]; then
    cat "$out"
    exit 0
fi
# Fallback: a plain man page of the help texts.
esc() { sed -e 's/\\/\\\\/g' -e 's/^\./\\\&./' -e "s/^'/\\\\\&'/"; }
echo ".TH IVSHMEM2 1 \"$(date +%Y-%m-%d)\" \"ivshmem2 $("$tool" --version)\" \"User Commands\""
echo ".SH NAME"
echo "ivshmem2 \\- software model of the ivshmem v2 PCI device, its server and test tools"
echo ".SH DESCRIPTION"
echo ".nf"
"$tool" --help | esc
echo ".fi"
for sub in $("$tool" --help | awk '/^SUBCOMMANDS:/{on=1; next} on && /^  [a-z]/{print $1} on && /^$/{if (seen) exit; seen=1}'); do
    echo ".SH \"ivshmem2 $sub\""
    echo ".nf"
    "$tool" help "$sub" 2>/dev/null | esc || true
    echo ".fi"
done
