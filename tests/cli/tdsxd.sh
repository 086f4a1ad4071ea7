#!/usr/bin/env bash
# tdsxd --check-config and tdsx registry/status on the real binaries: every bad config line
# reported with its number, files the config names checked, exit codes 0/1/2.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

command -v tdsxd >/dev/null || { echo "tdsxd is not on PATH" >&2; exit 1; }

expect 0 tdsxd --help
out_has '^usage: tdsxd -c FILE'
expect 2 tdsxd
expect 2 tdsxd -c a.conf extra

# A missing file cannot be read: exit 2... but it is reported as a problem with the file.
expect 2 tdsxd -c missing.conf --check-config
err_has 'missing.conf: .*not found'

# Every bad line is reported with its number, in one run.
cat > bad.conf <<'CONF'
role king
listen 127.0.0.1
credentials creds
frobnicate 1
frame_cap 12x
max_streams 0
data_dir d
data_dir again
peer 91350100M000100Y4Z/x 127.0.0.1:1
CONF
expect 1 tdsxd -c bad.conf --check-config
err_has '^bad.conf:1: role: expected centre, brain or enterprise'
err_has '^bad.conf:2: listen: expected host:port'
err_has "^bad.conf:4: unknown key 'frobnicate'"
err_has '^bad.conf:5: frame_cap'
err_has '^bad.conf:6: max_streams: 0 is outside'
err_has '^bad.conf:8: data_dir: already set on line 7'
err_has '^bad.conf:9: peer: .*not a valid USCC'
err_has '^bad.conf: registry: required key missing'
[ "$(grep -c TDSX_E_CONFIG err)" -ge 8 ] || { echo "FAIL: expected 8 problems" >&2; exit 1; }

# A syntactically fine config naming credentials that do not exist.
USCC=91350100M000100Y43
expect 0 tdsx ca init --dir ca --name "测试根CA"
expect 0 tdsx ca issue --dir ca --uscc $USCC --org "测试企业" --node n1 --role enterprise --out n1
cat > good.conf <<'CONF'
role enterprise
listen 127.0.0.1:1
credentials n1
data_dir data
registry reg.txt
CONF
cat > nocreds.conf <<'CONF'
role enterprise
credentials nowhere
data_dir data
registry reg.txt
CONF
expect 0 tdsx registry add --registry reg.txt --creds n1 --endpoint 127.0.0.1:1
out_has "^added $USCC/n1 to reg.txt"
grep -q "^$USCC/n1 enterprise 127.0.0.1:1 auth=" reg.txt
# The same node twice is refused and the file left as it was.
cp reg.txt reg-before.txt
expect 1 tdsx registry add --registry reg.txt --creds n1 --endpoint 127.0.0.1:2
err_has 'line 2'
same_file reg.txt reg-before.txt
expect 0 tdsx registry check reg.txt
out_has '1 members'
echo "garbage line" >> bad-reg.txt
expect 1 tdsx registry check bad-reg.txt
err_has '^bad-reg.txt:1:'

expect 1 tdsxd -c nocreds.conf --check-config
err_has 'ca.pem: .*not found'
expect 0 tdsxd -c good.conf --check-config
out_has "good.conf: ok \\($USCC/n1, enterprise\\)"

# The role in the config must be the one the CA wrote into the certificate.
sed 's/^role enterprise/role centre/' good.conf > liar.conf
expect 1 tdsxd -c liar.conf --check-config
err_has 'TDSX_E_CERT_ROLE'

# tdsx ca issue can add the node to the registry itself; a duplicate is refused and the
# registry left as it was (the credentials were issued; the registry line was not added).
expect 0 tdsx ca issue --dir ca --uscc $USCC --org "测试企业" --node n2 --role brain --out n2 \
  --registry reg.txt --endpoint 127.0.0.1:3
out_has "^added $USCC/n2 to reg.txt"
grep -q "^$USCC/n2 brain 127.0.0.1:3 auth=" reg.txt
cp reg.txt reg-before.txt
expect 1 tdsx ca issue --dir ca --uscc $USCC --org "测试企业" --node n2 --role brain --out n2b \
  --registry reg.txt --endpoint 127.0.0.1:4
err_has 'duplicate id'
same_file reg.txt reg-before.txt
expect 2 tdsx ca issue --dir ca --uscc $USCC --org O --node n3 --role brain --out n3 --registry reg.txt
err_has 'go together'

# status without a daemon: could not run.
expect 2 tdsx status --socket "$work/none.sock"
err_has 'TDSX_E_NOTFOUND'
expect 2 tdsx status
err_has 'socket'
echo "ok"
