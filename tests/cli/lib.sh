# shellcheck shell=bash
# Helpers for the CLI shell tests: run a command, check its exit status and output.
# Sourced by the tests; every failed check exits the test at once with a message.

command -v tdsx >/dev/null || { echo "tdsx is not on PATH" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work" || exit 1

# expect STATUS CMD...: runs CMD with stdout in ./out and stderr in ./err.
expect() {
  local want=$1 got=0
  shift
  "$@" >out 2>err || got=$?
  if [ "$got" != "$want" ]; then
    echo "FAIL: exit $got, expected $want: $*" >&2
    sed 's/^/  stdout: /' out >&2
    sed 's/^/  stderr: /' err >&2
    exit 1
  fi
}

# out_has / err_has PATTERN (extended regex) about the last expect.
out_has() {
  grep -Eq -- "$1" out || { echo "FAIL: stdout lacks /$1/" >&2; sed 's/^/  stdout: /' out >&2; exit 1; }
}
err_has() {
  grep -Eq -- "$1" err || { echo "FAIL: stderr lacks /$1/" >&2; sed 's/^/  stderr: /' err >&2; exit 1; }
}

# mode_is MODE FILE
mode_is() {
  local m
  m=$(stat -c %a "$2")
  [ "$m" = "$1" ] || { echo "FAIL: $2 has mode $m, expected $1" >&2; exit 1; }
}

# same_file A B / absent FILE
same_file() { cmp -s "$1" "$2" || { echo "FAIL: $1 and $2 differ" >&2; exit 1; }; }
absent() { [ ! -e "$1" ] || { echo "FAIL: $1 should not exist" >&2; exit 1; }; }
