#!/usr/bin/env bash
# System packages the test suite drives for real: Debian's Chromium (+ driver) for the browser
# tests, CJK fonts so Chinese renders in screenshots, podman/runc/debootstrap for the container
# tier (skip those with IMGCLS_SKIP_CONTAINER=1). Never `playwright install` (it downloads).
set -euo pipefail
need=()
command -v chromium > /dev/null || need+=(chromium chromium-driver)
fc-list 2> /dev/null | grep -qi "Noto Sans CJK" || need+=(fonts-noto-cjk)
if [ "${IMGCLS_SKIP_CONTAINER:-0}" != 1 ]; then
  command -v podman > /dev/null || need+=(podman)
  command -v runc > /dev/null || need+=(runc)
  command -v debootstrap > /dev/null || need+=(debootstrap)
fi
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "Missing system packages: ${need[*]} (install them with apt-get as root)" >&2
    exit 0
  fi
  echo "Installing system packages: ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" > /dev/null
fi
