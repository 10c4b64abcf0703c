#!/usr/bin/env bash
# System packages the tests need, from Debian's archive (Debian 12 and later):
#   prometheus (prometheus, promtool)   the real-Prometheus test and `promtool test rules`
#   prometheus-alertmanager (amtool)    `amtool check-config` of deploy/alertmanager
#   kcat, socat, openssl                Kafka CLI client and the TLS terminator of the TLS tests
# Idempotent and quick when everything is present: it only calls apt when a command is
# missing, and runs `apt-get update` only when apt has no candidate for a missing package.
set -euo pipefail

# command that must exist → Debian package that provides it
declare -A PROVIDES=(
  [prometheus]=prometheus
  [promtool]=prometheus
  [amtool]=prometheus-alertmanager
  [prometheus-alertmanager]=prometheus-alertmanager
  [kcat]=kcat
  [socat]=socat
  [openssl]=openssl
)

missing=()
for command in "${!PROVIDES[@]}"; do
  if ! command -v "$command" >/dev/null 2>&1; then
    package=${PROVIDES[$command]}
    [[ " ${missing[*]} " == *" $package "* ]] || missing+=("$package")
  fi
done

if ((${#missing[@]} == 0)); then
  echo "system-deps: prometheus, promtool, amtool, kcat, socat and openssl are installed"
  exit 0
fi

if ((EUID == 0)); then
  as_root=()
elif command -v sudo >/dev/null 2>&1; then
  as_root=(sudo)
else
  echo "system-deps: missing ${missing[*]}; run this script as root (or install sudo)" >&2
  exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "system-deps: missing ${missing[*]} and no apt-get; install them with your package" \
       "manager (Debian names: ${missing[*]})" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
updated=0
update() {
  echo "system-deps: apt-get update"
  "${as_root[@]}" apt-get update -qq
  updated=1
}
# A fresh machine has empty package lists: update once, only if a package has no candidate.
for package in "${missing[@]}"; do
  if ! apt-cache policy "$package" 2>/dev/null | grep -q 'Candidate: [0-9]'; then
    update
    break
  fi
done

echo "system-deps: installing ${missing[*]}"
# The packages' maintainer scripts would start prometheus/alertmanager daemons on a machine
# with an init system; the tests start their own on free ports, so keep the daemons off.
policy=/usr/sbin/policy-rc.d
created_policy=0
if [[ ! -e $policy ]]; then
  printf '#!/bin/sh\nexit 101\n' | "${as_root[@]}" tee "$policy" >/dev/null
  "${as_root[@]}" chmod 755 "$policy"
  created_policy=1
fi
apt_install() {
  "${as_root[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
}
status=0
if ! apt_install; then
  # Stale package lists name versions the mirror no longer has: update and try once more.
  if ((updated)); then
    status=1
  else
    { update && apt_install; } || status=$?
  fi
fi
if ((created_policy)); then
  "${as_root[@]}" rm -f "$policy"
fi
exit "$status"
