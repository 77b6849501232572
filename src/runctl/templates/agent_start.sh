# runctl agent bootstrap (POSIX sh): get a Python, install the shipped agent, start it.
# argv: the agent's command ("runctl agent run ..."; "runctl" is replaced by the agent's path).
# env: RUNCTL_AGENT_HOME (relative to $HOME), RUNCTL_AGENT_SOURCE (ship | preinstalled |
# pip:REQUIREMENT), RUNCTL_AGENT_DETACH (1: detached, 0: exec), and for "ship"
# RUNCTL_AGENT_MANIFEST_URL + RUNCTL_AGENT_MANIFEST_SHA256; RUNCTL_PYTHON_MIRROR (optional).
# See runctl.workflows.agent_shipping for the manifest and why each step is there.
set -eu
cd "${HOME:-/root}"
mkdir -p "$RUNCTL_AGENT_HOME"
cd "$RUNCTL_AGENT_HOME"
report_url=""
report_attempt=0
say() { printf 'runctl-start: %s\n' "$*" >&2; }
have() { command -v "$1" >/dev/null 2>&1; }
any_python=""
for c in python3 python; do
  if have "$c"; then any_python=$(command -v "$c"); break; fi
done
fetch() {
  if have curl; then curl -fsSL --retry 3 -o "$2" "$1"
  elif have wget; then wget -q -O "$2" "$1"
  elif [ -n "$any_python" ]; then "$any_python" -c 'import shutil, sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=120) as r, open(sys.argv[2], "wb") as f:
    shutil.copyfileobj(r, f)' "$1" "$2"
  else say "no curl, wget or python3 to download with"; return 1; fi
}
put() {
  if have curl; then curl -fsS -o /dev/null -X PUT --upload-file "$2" "$1"
  elif have wget; then wget -q -O /dev/null --method=PUT --body-file="$2" "$1"
  elif [ -n "$any_python" ]; then "$any_python" -c 'import sys, urllib.request
data = open(sys.argv[2], "rb").read()
urllib.request.urlopen(urllib.request.Request(sys.argv[1], data=data, method="PUT"), timeout=60).close()' "$1" "$2"
  else return 1; fi
}
sha256_of() {
  if have sha256sum; then sha256sum "$1" | cut -d ' ' -f 1
  elif have shasum; then shasum -a 256 "$1" | cut -d ' ' -f 1
  else "$any_python" -c 'import hashlib, sys; print(hashlib.sha256(open(sys.argv[1], "rb").read()).hexdigest())' "$1"; fi
}
now() { date +%s; }
event() { printf '%s %s %s\n' "$(now)" "$1" "$2" >>bootstrap.events; }
fail() {
  say "failed_setup: $1"
  if [ -n "$report_url" ]; then
    detail=$(printf 'agent bootstrap failed: %s' "$1" | tr -d '"\\' | tr '\n\t' '  ')
    printf '{"attempt": %s, "state": "failed_setup", "exit_code": 80, "detail": "%s", "ended_at": %s}\n' \
      "$report_attempt" "$detail" "$(now)" >failed_setup.json
    put "$report_url" failed_setup.json || say "could not report the failure to the job's storage"
  fi
  exit 80
}
agent_python() {
  for c in python3.13 python3.12 python3.11 python3; do
    if have "$c" && "$c" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      command -v "$c"; return 0
    fi
  done
  return 1
}
event bootstrap.start "$RUNCTL_AGENT_SOURCE"
py=$(agent_python) || py=""
source_kind=$RUNCTL_AGENT_SOURCE
case "$source_kind" in
  preinstalled)
    have runctl || fail "[remote] agent_source = preinstalled, but runctl is not on this machine's PATH"
    agent=$(command -v runctl) ;;
  pip:*)
    [ -n "$py" ] || fail "no Python >= 3.11 on this machine for [remote] agent_source = $source_kind"
    venv="$HOME/.runctl/agent/pip"
    "$py" -m venv "$venv" || fail "$py could not create a virtualenv with pip"
    "$venv/bin/python" -m pip install --quiet "${source_kind#pip:}" >pip.log 2>&1 \
      || fail "pip install ${source_kind#pip:}: $(tail -n 3 pip.log)"
    agent="$venv/bin/runctl" ;;
  ship)
    fetch "$RUNCTL_AGENT_MANIFEST_URL" manifest.txt || fail "could not download the agent manifest"
    [ "$(sha256_of manifest.txt)" = "$RUNCTL_AGENT_MANIFEST_SHA256" ] \
      || fail "the agent manifest's SHA-256 does not match the one the controller sent"
    key="" requirement=""
    while read -r kind a b c; do
      case "$kind" in
        key) key=$a ;;
        requirement) requirement=$a ;;
        report) report_attempt=$a; report_url=$b ;;
      esac
    done <manifest.txt
    [ -n "$key" ] && [ -n "$requirement" ] || fail "the agent manifest is incomplete"
    mkdir -p wheels
    arch=$(uname -m)
    get() {  # fetch every listed wheel whose name matches the glob $1 and fits this machine
      while read -r kind sha name url; do
        [ "$kind" = file ] || continue
        case "$name" in */* | .*) fail "the agent manifest names an unsafe file: $name" ;; esac
        case "$name" in $1) ;; *) continue ;; esac
        case "$name" in *linux*) case "$name" in *"$arch"*) ;; *) continue ;; esac ;; esac
        case "$name" in *-cp3[0-9]*-cp3[0-9]*-*) case "$name" in *"-$2-$2-"*) ;; *) continue ;; esac ;; esac
        fetch "$url" "wheels/$name" || fail "could not download $name"
        if [ "$(sha256_of "wheels/$name")" != "$sha" ]; then
          rm -f "wheels/$name"
          fail "SHA-256 mismatch for $name: the file in storage is not the one the controller shipped"
        fi
      done <manifest.txt
    }
    if [ -z "$py" ]; then
      found=none
      [ -z "$any_python" ] || found=$("$any_python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
      say "Python $found is older than 3.11: getting a managed CPython with uv"
      get 'uv-*' none
      uvwhl=$(ls wheels/uv-*.whl 2>/dev/null | head -n 1) || true
      [ -n "$uvwhl" ] || fail "this machine's Python ($found) is older than 3.11 and no uv wheel was shipped for $arch"
      [ -n "$any_python" ] || fail "this machine has no Python at all to unpack uv with; use an image with python3"
      "$any_python" -m zipfile -e "$uvwhl" uv-unpacked
      uvbin=$(find uv-unpacked -name uv -type f | head -n 1)
      chmod +x "$uvbin"
      [ -z "${RUNCTL_PYTHON_MIRROR:-}" ] || export UV_PYTHON_INSTALL_MIRROR="$RUNCTL_PYTHON_MIRROR"
      export UV_PYTHON_INSTALL_DIR="$HOME/.runctl/python"
      "$uvbin" python install 3.12 >uv.log 2>&1 && py=$("$uvbin" python find 3.12) || fail \
        "this machine's Python ($found) is older than 3.11 and uv could not install one from ${RUNCTL_PYTHON_MIRROR:-uv's default source}: $(tail -n 2 uv.log)"
    fi
    pytag=$("$py" -c 'import sys; print("cp%d%d" % sys.version_info[:2])')
    event bootstrap.python "$py"
    get '*' "$pytag"
    venv="$HOME/.runctl/agent/$key-$pytag"
    if [ ! -f "$venv/.runctl-complete" ]; then
      rm -rf "$venv"
      "$py" -m venv --without-pip "$venv" || fail "$py cannot create a virtualenv (no venv module)"
      pipwhl=$(ls wheels/pip-*.whl 2>/dev/null | head -n 1) || true
      [ -n "$pipwhl" ] || fail "no pip wheel was shipped"
      "$venv/bin/python" "$pipwhl/pip" install --quiet --no-index --no-cache-dir --find-links wheels \
        "$requirement" >pip.log 2>&1 || fail "pip could not install the agent: $(tail -n 3 pip.log)"
      if ls wheels/uv-*.whl >/dev/null 2>&1; then  # for PEP 723 scripts and project environments
        "$venv/bin/python" "$pipwhl/pip" install --quiet --no-index --no-cache-dir --find-links wheels uv \
          >>pip.log 2>&1 || say "uv could not be installed: PEP 723 scripts will need one on PATH"
      fi
      touch "$venv/.runctl-complete"
    fi
    rm -rf wheels uv-unpacked
    agent="$venv/bin/runctl" ;;
  *) fail "unknown agent source $source_kind" ;;
esac
event bootstrap.done "$agent"
shift
if [ "${RUNCTL_AGENT_DETACH:-1}" = 1 ]; then
  setsid nohup "$agent" "$@" >agent.log 2>&1 </dev/null &
  echo $! >agent.pid
else
  exec "$agent" "$@"
fi
