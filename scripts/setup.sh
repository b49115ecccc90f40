#!/usr/bin/env bash
# Set up everything meshemu needs on a fresh Debian machine (run as root): Debian packages,
# then a virtual environment in .venv with meshemu and its test tools. Idempotent and quiet
# when everything is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

# BIRD 2 runs the lab's BGP routers. Any `bird` of version 2 will do (PATH, or /usr/sbin, which
# a non-root PATH often lacks); Debian's `bird` package is BIRD 1.6 and conflicts with bird2.
has_bird2() {
  local b version
  for b in "$(command -v bird 2>/dev/null || true)" /usr/sbin/bird; do
    [ -n "$b" ] && [ -x "$b" ] || continue
    version=$("$b" --version 2>&1 || true)  # `BIRD version 2.0.12`, on stderr
    [[ "$version" == "BIRD version 2."* ]] && return 0
  done
  return 1
}

need_apt=()
command -v ip >/dev/null 2>&1 || need_apt+=(iproute2)
command -v nft >/dev/null 2>&1 || [ -x /usr/sbin/nft ] || need_apt+=(nftables)
has_bird2 || need_apt+=(bird2)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need_apt+=(python3-venv)
command -v python3 >/dev/null 2>&1 || need_apt+=(python3)
if [ "${#need_apt[@]}" -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: need root to install ${need_apt[*]} (apt-get)" >&2
    exit 3
  fi
  if [[ " ${need_apt[*]} " == *" bird2 "* ]] \
    && [ "$(dpkg-query -W -f='${Status}' bird 2>/dev/null || true)" = "install ok installed" ]; then
    echo "setup: Debian's bird package (BIRD 1.6) is installed and conflicts with bird2," \
      "which meshemu's routers need: remove it (apt-get remove bird) and run setup again" >&2
    exit 3
  fi
  # A package's postinst starts its service (bird2: a BIRD on the host) unless
  # /usr/sbin/policy-rc.d exits 101 (invoke-rc.d and deb-systemd-invoke both ask it). The lab
  # runs its own BIRDs in namespaces and never wants a host one: while apt-get runs, forbid
  # starts with a temporary policy, removed afterwards; an existing policy is left alone.
  policy=/usr/sbin/policy-rc.d
  made_policy=
  if [ ! -e "$policy" ] && [ ! -L "$policy" ]; then
    made_policy=1
    trap 'rm -f "$policy"' EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM HUP
    printf '#!/bin/sh\n# meshemu setup.sh: start no service while it installs packages\nexit 101\n' \
      >"$policy"
    chmod 755 "$policy"
  fi
  echo "setup: installing Debian packages: ${need_apt[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
  if [ -n "$made_policy" ]; then
    rm -f "$policy"
    trap - EXIT INT TERM HUP
  fi
fi

if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  python3 -m venv .venv
fi
stamp=.venv/.meshemu-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "setup: installing meshemu and its dependencies into .venv"
  .venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true  # an old pip still works
  # pip's own output (and setuptools' note on editable installs) only when it fails.
  if ! pip_log=$(.venv/bin/python -m pip install -q -e '.[test]' 2>&1); then
    printf '%s\n' "$pip_log" >&2
    exit 1
  fi
  touch "$stamp"
fi

# BIRD 1.6 runs the nodes with `speaker: bird`: Calico's confd renders BIRD 1.x configuration,
# which BIRD 2 refuses. Debian's `bird` package (1.6.8) conflicts with bird2, so it is never
# installed: its .deb is downloaded and unpacked into the venv (`bird`, `bird6` need only libc),
# where meshemu looks for it (controlplane/bird_tools.py: .venv/opt/bird1/usr/sbin, or
# $MESHEMU_BIRD1).
bird1_dir=.venv/opt/bird1
has_bird1() {
  local b version
  for b in "$bird1_dir/usr/sbin/bird" "$bird1_dir/usr/sbin/bird6"; do
    [ -x "$b" ] || return 1
    version=$("$b" --version 2>&1 || true)  # `BIRD version 1.6.8`, on stderr
    [[ "$version" == "BIRD version 1."* ]] || return 1
  done
}
unpack_bird1() {
  local tmp deb
  tmp=$(mktemp -d)
  # apt downloads as user _apt where it may write, else (as here) as root with a warning.
  chmod 755 "$tmp"
  if ! (cd "$tmp" && apt-get download -qq bird >/dev/null 2>&1); then
    if [ "$(id -u)" -eq 0 ]; then
      apt-get update -qq
    fi
    if ! (cd "$tmp" && apt-get download -qq bird >/dev/null); then
      rm -rf "$tmp"
      echo "setup: cannot download Debian's bird package (BIRD 1.6), which nodes with" \
        "speaker: bird run; set MESHEMU_BIRD1 to a BIRD 1.6 bird binary instead" >&2
      return 3
    fi
  fi
  # (Called in an `||` list, where `set -e` does not act: every step is checked.)
  deb=$(ls "$tmp"/bird_*.deb) || return 3
  rm -rf "$bird1_dir.new"
  mkdir -p "$(dirname "$bird1_dir")" || return 3
  if ! dpkg-deb -x "$deb" "$bird1_dir.new"; then
    rm -rf "$tmp" "$bird1_dir.new"
    return 3
  fi
  rm -rf "$tmp" "$bird1_dir"
  mv "$bird1_dir.new" "$bird1_dir" || return 3
}
if ! has_bird1; then
  echo "setup: unpacking Debian's bird (BIRD 1.6) into $bird1_dir (not installed: it conflicts with bird2)"
  unpack_bird1 || exit 3
  if ! has_bird1; then
    echo "setup: $bird1_dir/usr/sbin has no BIRD 1.x bird and bird6 after unpacking" >&2
    exit 3
  fi
fi
