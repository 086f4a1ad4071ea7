#!/usr/bin/env bash
# tdsx ca: init, issue, verify, revoke and crl with the real binary, their refusals and
# exit codes (0 ok, 1 invalid or refused, 2 could not run).
set -euo pipefail
. "$(dirname "$0")/lib.sh"

USCC=91350100M000100Y43
ROOT_OID=2.25.122680217660750419427743317745993533235

# --help on every command: usage on stdout, exit 0.
for c in "uscc check" "ca init" "ca issue" "ca revoke" "ca crl" "ca verify"; do
  # shellcheck disable=SC2086
  expect 0 tdsx $c --help
  out_has "^usage: tdsx $c"
done

# Usage errors: unknown option, missing required option, bad values.
expect 2 tdsx ca init --dir ca
err_has 'required'
expect 2 tdsx ca init --dir ca --name X --frobnicate
err_has "unknown option '--frobnicate'"
expect 2 tdsx ca init --dir ca --name X --days nope
expect 2 tdsx ca init --dir ca --name
err_has 'needs a value'
absent ca

# init
expect 0 tdsx ca init --dir ca --name "山东省数据流通根CA" --intermediate --days 3650
out_has '^anchor +ca/root.pem'
mode_is 700 ca
mode_is 600 ca/root.key
mode_is 600 ca/intermediate.key
cp ca/root.pem root-before.pem
expect 2 tdsx ca init --dir ca --name Other
err_has 'TDSX_E_EXISTS'
same_file ca/root.pem root-before.pem

# issue
expect 2 tdsx ca issue --dir ca --uscc $USCC --org O --node n --out n1
err_has 'required'
expect 2 tdsx ca issue --dir ca --uscc $USCC --org O --node n --role king --out n1
expect 1 tdsx ca issue --dir ca --uscc 91350100M000100Y44 --org O --node n --role brain --out bad
err_has 'TDSX_E_USCC_CHECK'
absent bad
expect 2 tdsx ca issue --dir nowhere --uscc $USCC --org O --node n --role brain --out bad
err_has 'TDSX_E_CA_STATE'
absent bad

expect 0 tdsx ca issue --dir ca --uscc $USCC --org "青岛海纳精密制造有限公司" --node gw-1 \
  --role enterprise --out n1
out_has "^issued $USCC/gw-1 \\(enterprise\\)"
mode_is 700 n1
for k in auth.key sign.key enc.key; do mode_is 600 "n1/$k"; done
for f in ca.pem chain.pem auth.pem sign.pem enc.pub; do [ -s "n1/$f" ]; done
cp n1/auth.key auth-before.key
expect 2 tdsx ca issue --dir ca --uscc $USCC --org O --node gw-1 --role enterprise --out n1
err_has 'TDSX_E_EXISTS'
same_file n1/auth.key auth-before.key
expect 0 tdsx ca issue --dir ca --uscc $USCC --org "青岛海纳精密制造有限公司" --node gw-1 \
  --role enterprise --out n1 --force
if cmp -s n1/auth.key auth-before.key; then echo "FAIL: --force did not replace" >&2; exit 1; fi
mode_is 600 n1/auth.key

# The GB 11714 check inside the USCC only warns; an over-long node name is refused.
expect 0 tdsx ca issue --dir ca --uscc 91350100M000100Y56 --org O --node warned --role brain \
  --out warned
err_has 'warning: organisation code M000100Y5'
long=$(printf 'n%.0s' $(seq 1 70))
expect 1 tdsx ca issue --dir ca --uscc $USCC --org O --node "$long" --role brain --out long
err_has 'TDSX_E_INVAL'
expect 1 tdsx ca issue --dir ca --uscc $USCC --org O --node a/b --role brain --out slash
err_has "without '/'"

# What OpenSSL itself sees in the certificates.
expect 0 openssl x509 -in n1/auth.pem -noout -text
out_has "Subject: .*serialNumber ?= ?$USCC"
out_has "Policy: $ROOT_OID\\.1\\.3"
out_has 'TLS Web Client Authentication, TLS Web Server Authentication'
out_has 'Public Key Algorithm: ED25519'
expect 0 openssl x509 -in n1/sign.pem -noout -text
out_has "Policy: $ROOT_OID\\.1\\.3"
out_has '^ +Non Repudiation$'
expect 0 openssl verify -CAfile n1/ca.pem -untrusted n1/chain.pem n1/auth.pem

# verify
V=(tdsx ca verify --anchor ca/root.pem --chain n1/chain.pem)
expect 0 "${V[@]}" --cert n1/auth.pem --purpose auth --role enterprise
out_has '^valid$'
out_has "^id +$USCC/gw-1$"
out_has '^org +青岛海纳精密制造有限公司$'
out_has '^role +enterprise$'
fp=$(openssl x509 -in n1/auth.pem -outform DER | sha256sum | cut -d' ' -f1)
out_has "^fingerprint +$fp$"
expect 0 "${V[@]}" --cert n1/sign.pem --purpose sign
expect 1 "${V[@]}" --cert n1/sign.pem --purpose auth
err_has 'TDSX_E_CERT_PURPOSE'
expect 1 "${V[@]}" --cert n1/auth.pem --purpose sign
err_has 'TDSX_E_CERT_PURPOSE'
expect 1 "${V[@]}" --cert n1/auth.pem --role centre
err_has 'TDSX_E_CERT_ROLE'
expect 1 tdsx ca verify --anchor ca/root.pem --cert n1/auth.pem
err_has 'TDSX_E_CERT_UNTRUSTED'
expect 1 "${V[@]}" --cert n1/auth.pem --require-crl
err_has 'TDSX_E_CRL_MISSING'
expect 1 "${V[@]}" --cert n1/auth.pem --at $(( $(date +%s) + 400 * 86400 ))
err_has 'TDSX_E_CERT_EXPIRED'
expect 1 "${V[@]}" --cert ca/root.key
err_has 'TDSX_E_CERT_PARSE'
expect 2 "${V[@]}" --cert missing.pem
err_has 'TDSX_E_NOTFOUND'
expect 2 tdsx ca verify --anchor missing.pem --cert n1/auth.pem
expect 2 "${V[@]}" --cert n1/auth.pem --purpose tls
expect 2 "${V[@]}" --cert n1/auth.pem --at yesterday
expect 2 tdsx ca verify --cert n1/auth.pem
err_has 'required'

# Not yet valid and expired certificates.
now=$(date +%s)
expect 0 tdsx ca issue --dir ca --uscc $USCC --org O --node later --role brain --out later \
  --not-before $(( now + 5 * 86400 ))
expect 1 "${V[@]}" --cert later/auth.pem
err_has 'TDSX_E_CERT_NOT_YET_VALID'
expect 0 "${V[@]}" --cert later/auth.pem --at $(( now + 6 * 86400 ))
expect 0 tdsx ca issue --dir ca --uscc $USCC --org O --node old --role brain --out old \
  --not-before $(( now - 10 * 86400 )) --days 1
expect 1 "${V[@]}" --cert old/auth.pem
err_has 'TDSX_E_CERT_EXPIRED'

# A foreign CA.
expect 0 tdsx ca init --dir other --name "Foreign Root"
expect 0 tdsx ca issue --dir other --uscc $USCC --org O --node x --role brain --out foreign
expect 1 tdsx ca verify --anchor ca/root.pem --cert foreign/auth.pem
err_has 'TDSX_E_CERT_UNTRUSTED'

# revoke and crl
expect 2 tdsx ca revoke --dir ca
expect 1 tdsx ca revoke --dir ca --cert foreign/auth.pem
err_has 'did not issue'
expect 0 tdsx ca revoke --dir ca --cert n1/auth.pem
out_has "^revoked n1/auth.pem sha256:$fp$"
expect 2 tdsx ca crl --dir ca
expect 0 tdsx ca crl --dir ca --out crl.pem --days 2
[ "$(grep -c 'BEGIN X509 CRL' crl.pem)" = 2 ] || { echo "FAIL: expected two CRLs" >&2; exit 1; }
cp crl.pem crl-before.pem
expect 2 tdsx ca crl --dir ca --out crl.pem
err_has 'TDSX_E_EXISTS'
same_file crl.pem crl-before.pem
serial=$(openssl x509 -in n1/auth.pem -noout -serial | cut -d= -f2)
# The file holds the root's CRL, then the intermediate's, which lists the node.
awk '/BEGIN X509 CRL/ { n++ } n == 1' crl.pem >root.crl
awk '/BEGIN X509 CRL/ { n++ } n == 2' crl.pem >inter.crl
expect 0 openssl crl -in root.crl -noout -text
out_has 'No Revoked Certificates'
expect 0 openssl crl -in inter.crl -noout -text
out_has "Serial Number: $serial"
out_has 'X509v3 CRL Number'
expect 0 openssl crl -in inter.crl -noout -CAfile ca/intermediate.pem
err_has "verify OK"

expect 1 "${V[@]}" --crl crl.pem --cert n1/auth.pem
err_has 'TDSX_E_CERT_REVOKED'
err_has '"event":"cert.refused"'
expect 0 "${V[@]}" --crl crl.pem --cert n1/sign.pem --purpose sign --require-crl
expect 2 "${V[@]}" --crl n1/auth.pem --cert n1/sign.pem
err_has 'TDSX_E_CRL_INVALID'
expect 1 "${V[@]}" --crl crl.pem --cert n1/sign.pem --at $(( now + 3 * 86400 ))
err_has 'TDSX_E_CRL_EXPIRED'

# A CA whose key others may read is refused.
chmod 644 ca/root.key
expect 2 tdsx ca crl --dir ca --out crl2.pem
err_has 'TDSX_E_PERM'
chmod 600 ca/root.key
echo "cli ca: ok"
