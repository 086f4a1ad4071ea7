#!/usr/bin/env bash
# tdsx bench send | pull | conns (the load generators behind scripts/bench): usage refusals and a daemon that
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

# bench pull: the dataset's owner and id are required; what only a send takes is refused.
expect 0 tdsx bench pull --help
out_has '^usage: tdsx bench pull --from NODE --dataset ID'
expect 2 tdsx bench pull --dataset d --count 1 --concurrency 1
err_has 'required'
expect 2 tdsx bench pull --from "$NODE" --count 1 --concurrency 1
err_has 'required'
expect 2 tdsx bench pull --from "$NODE" --dataset d --count 1 --concurrency 1 --size 10
err_has 'takes no'
expect 2 tdsx bench pull --from "$NODE" --dataset d --count 1 --concurrency 1 --tags grade=core
err_has 'takes no'
expect 2 tdsx bench send --to "$NODE" --size 10 --count 1 --concurrency 1 --from "$NODE"
err_has 'bench pull'
expect 2 tdsx bench pull --from "$NODE" --dataset d --count 2 --concurrency 1 --socket "$work/none.sock"
err_has 'none.sock'

# bench conns: required options, bad values, and a server that is not there.
expect 0 tdsx bench conns --help
out_has '^usage: tdsx bench conns --connect HOST:PORT'
expect 2 tdsx bench conns --creds "$work"
err_has 'required'
expect 2 tdsx bench conns --connect 127.0.0.1:1 --creds "$work" --count 0
expect 2 tdsx bench conns --connect localhost:1 --creds "$work"
err_has 'IPv4'
expect 2 tdsx bench conns --connect 127.0.0.1:1 --creds "$work" --hello --request x
expect 2 tdsx bench conns --connect 127.0.0.1:1 --creds "$work" --hold 0
err_has 'hold'
# No credentials in the directory: could not run.
expect 2 tdsx bench conns --connect 127.0.0.1:1 --creds "$work"
err_has 'TLS client setup'
echo ok
