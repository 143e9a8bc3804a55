#!/bin/sh
# What the built-in local test server needs on this workstation (Debian/Ubuntu):
# Docker's engine (Debian's docker.io), debootstrap to build the base image when no
# debian:bookworm image can be pulled, gpg for the stand-in release signatures.
# Starts dockerd by hand when no engine answers (machines without systemd).
set -eu
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"

need=""
command -v dockerd >/dev/null 2>&1 || need="$need docker.io"
command -v debootstrap >/dev/null 2>&1 || need="$need debootstrap"
command -v gpg >/dev/null 2>&1 || need="$need gnupg"
LOG="$(dirname "$0")/../.local/logs/prereqs.log"
mkdir -p "$(dirname "$LOG")"
if [ -n "$need" ]; then
    echo "[prereqs] installing:$need (apt's output: .local/logs/prereqs.log)"
    if ! { $SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q $need; } >"$LOG" 2>&1; then
        tail -n 20 "$LOG" >&2
        echo "[prereqs] installing$need failed: see .local/logs/prereqs.log" >&2
        exit 1
    fi
fi

if ! docker info >/dev/null 2>&1; then
    if [ -d /run/systemd/system ]; then
        $SUDO systemctl start docker
    else
        echo "[prereqs] starting dockerd (log: /var/log/dockerd.log)"
        $SUDO sh -c 'nohup dockerd >/var/log/dockerd.log 2>&1 &'
    fi
    i=0
    until docker info >/dev/null 2>&1; do
        i=$((i + 1))
        if [ "$i" -gt 60 ]; then
            echo "[prereqs] dockerd did not answer within 60 s: see /var/log/dockerd.log" >&2
            exit 1
        fi
        sleep 1
    done
fi
if command -v go >/dev/null 2>&1; then
    echo "[prereqs] docker, debootstrap, gpg and $(go version | cut -d' ' -f3) are ready"
else
    echo "[prereqs] docker, debootstrap and gpg are ready; no go command: building Mattermost from source" >&2
    echo "          (the tests, and make demo without internet) needs Go 1.24 or newer: https://go.dev/doc/install" >&2
fi
