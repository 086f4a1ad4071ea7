#!/usr/bin/env bash
# tdsx report make | show | submit with the real binary, without a daemon: usage, exit codes
# (0 done, 1 refused or not a valid report, 2 could not run) and what `show` refuses offline.
# Reports made, submitted and shown against running daemons: tests/gateway/test_report.c.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

for c in make show submit; do
  expect 0 tdsx report $c --help
  out_has "^usage: tdsx report $c"
done

# show: one FILE, one way to verify, a readable file that is a report.
expect 2 tdsx report show
err_has 'one FILE is required'
expect 2 tdsx report show a b
expect 2 tdsx report show missing.note
printf 'hello\n' >not-a-report.note
expect 1 tdsx report show not-a-report.note
err_has 'TDSX_E_NOTE_FORMAT'
# A signed-note shape whose text is not a report.
printf 'tdsx-report/v1\nnode x\n\n\xe2\x80\x94 x AAAAAAAA\n' >shape.note
expect 1 tdsx report show shape.note
printf 'x\n' >k.pem
expect 2 tdsx report show not-a-report.note --key v --cert k.pem
err_has 'alternatives'
expect 2 tdsx report show not-a-report.note --key not-a-key
err_has 'not a note verifier key'
expect 2 tdsx report show not-a-report.note --bogus

# make / submit: arguments are checked before the daemon is asked; no daemon is exit 2.
expect 2 tdsx report make --period 10
err_has 'two unix times'
expect 2 tdsx report make --period 20 10
err_has 'TO must not be before FROM'
expect 2 tdsx report make --period -1 10
expect 2 tdsx report make extra
expect 2 tdsx report submit 0
err_has 'sequence number'
expect 2 tdsx report submit 1 2
expect 2 tdsx report make --socket "$work/no-such.sock"
expect 2 tdsx report submit --socket "$work/no-such.sock"
echo "report CLI: ok"
