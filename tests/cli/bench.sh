#!/usr/bin/env bash
# tdsx bench send (the load generator behind scripts/bench): usage refusals and a daemon that
# cannot be reached, on the real binary. Its measurements are never asserted in tests.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

NODE=91350100M000100Y43/brain
expect 0 tdsx bench send --help
out_has '^usage: tdsx bench send --to NODE'
expect 2 tdsx bench send --size 10 --count 1 --concurrency 1
err_has 'required'
expect 2 tdsx bench send --to "$NODE" --size 10 --count 1
err_has 'required'
expect 2 tdsx bench send --to "$NODE" --size 10 --count 1 --concurrency 1 --frobnicate
expect 2 tdsx bench send --to "$NODE" --size nope --count 1 --concurrency 1 --socket "$work/x.sock"
# A daemon that is not there: could not run, and it says where it looked.
expect 2 tdsx bench send --to "$NODE" --size 10 --count 2 --concurrency 1 --socket "$work/none.sock"
err_has 'none.sock'
echo ok
