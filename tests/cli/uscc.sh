#!/usr/bin/env bash
# tdsx uscc check: exit 0 valid, 1 invalid with the reason, 2 usage.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

expect 0 tdsx uscc check 91350100M000100Y43
out_has '^valid$'
[ ! -s err ] || { echo "FAIL: unexpected stderr" >&2; cat err >&2; exit 1; }

# The GB 11714 organisation code (positions 9-17) failing its own check only warns:
# 91350100M000100Y5 with its USCC check character appended.
expect 0 tdsx uscc check 91350100M000100Y56
out_has '^valid$'
err_has 'warning: organisation code M000100Y5'

expect 1 tdsx uscc check 91350100M000100Y44
err_has 'TDSX_E_USCC_CHECK'
expect 1 tdsx uscc check 91350100M000100Y4Z
err_has 'TDSX_E_USCC_CHAR'
expect 1 tdsx uscc check 91350100m000100Y43
err_has 'TDSX_E_USCC_CHAR'
expect 1 tdsx uscc check 91350100M000100Y4
err_has 'TDSX_E_USCC_LENGTH'
expect 1 tdsx uscc check 91350100M000100Y433
err_has 'TDSX_E_USCC_LENGTH'
expect 1 tdsx uscc check ""
err_has 'TDSX_E_USCC_LENGTH'

expect 2 tdsx uscc check
err_has 'exactly one CODE'
expect 2 tdsx uscc check 91350100M000100Y43 91350100M000100Y43
expect 2 tdsx uscc check --bogus 91350100M000100Y43
err_has "unknown option '--bogus'"

expect 0 tdsx uscc check --help
out_has '^usage: tdsx uscc check CODE'
echo "cli uscc: ok"
