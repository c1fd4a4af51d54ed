#!/usr/bin/env bash
# Install what tests/test_windows_task.py needs to run the generated batch file for real:
# Debian's 64-bit wine (cmd.exe, wineboot, wineserver, winepath) and the MinGW-w64 C compiler
# that builds the stub python.exe. Idempotent: does nothing when both tools are already there.
set -euo pipefail

if command -v wine >/dev/null 2>&1 && command -v x86_64-w64-mingw32-gcc >/dev/null 2>&1; then
    echo "install-wine: wine and x86_64-w64-mingw32-gcc already installed"
    exit 0
fi

export DEBIAN_FRONTEND=noninteractive
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi

# `wine` is the /usr/bin/wine launcher; with `wine64` it needs no i386 architecture (no wine32).
# The -win32 compiler alone is enough (the gcc-mingw-w64-x86-64 metapackage adds a -posix twin).
# Recommends (fonts, gstreamer, GL, mono, ...) are left out: cmd.exe and a console stub need none.
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends \
    wine wine64 gcc-mingw-w64-x86-64-win32 >/dev/null
echo "install-wine: installed $(WINEDEBUG=-all wine --version) and $(x86_64-w64-mingw32-gcc --version | head -n 1)"
