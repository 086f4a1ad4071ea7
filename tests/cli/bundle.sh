#!/usr/bin/env bash
# tdsx bundle: make, sign and show with the real binary — a bundle a node would accept, and
# the refusals: a non-centre signer, another CA's anchor, a tampered byte, bad options —
# with their exit codes (0 ok, 1 invalid or refused, 2 could not run).
set -euo pipefail
. "$(dirname "$0")/lib.sh"

CENTRE=91350100M000100Y43
ENT=91350100M000100Y56

for c in "bundle make" "bundle sign" "bundle show"; do
  # shellcheck disable=SC2086
  expect 0 tdsx $c --help
  out_has "^usage: tdsx $c"
done

# A province with a centre and an enterprise in its registry, and an unrelated CA.
expect 0 tdsx ca init --dir ca --name "山东省数据流通根CA" --intermediate
expect 0 tdsx ca issue --dir ca --uscc $CENTRE --org "省级能力中心" --node centre --role centre \
  --out centre --registry reg.txt --endpoint 127.0.0.1:7001
expect 0 tdsx ca issue --dir ca --uscc $ENT --org "某制造企业" --node ent --role enterprise \
  --out ent --registry reg.txt --endpoint 127.0.0.1:7002
expect 0 tdsx ca init --dir other --name "Other Root"

# Usage errors: nothing written.
expect 2 tdsx bundle make --ca ca --registry reg.txt --out b.unsigned
err_has 'required'
expect 2 tdsx bundle make --ca ca --registry reg.txt --serial 0 --out b.unsigned
err_has 'serial'
expect 2 tdsx bundle make --ca ca --registry reg.txt --serial 1 --valid 0h --out b.unsigned
expect 2 tdsx bundle make --ca ca --registry reg.txt --serial 1 --valid 24x --out b.unsigned
expect 2 tdsx bundle make --ca ca --registry reg.txt --serial 1 --valid 400d --out b.unsigned
expect 2 tdsx bundle make --ca ca --registry reg.txt --serial 1 --policy-floor -1 --out b.unsigned
expect 2 tdsx bundle sign --creds centre --in b.unsigned
err_has 'required'
expect 2 tdsx bundle show
expect 2 tdsx bundle show a b
expect 2 tdsx bundle show x --chain ca/intermediate.pem
absent b.unsigned

# Refused inputs: a missing CA, a witness without its credentials, creds of no member.
expect 2 tdsx bundle make --ca nowhere --registry reg.txt --serial 1 --out b.unsigned
expect 1 tdsx bundle make --ca ca --registry reg.txt --serial 1 --witness $CENTRE/centre \
  --out b.unsigned
err_has 'witness'
expect 0 tdsx ca issue --dir ca --uscc 91350100M000100Y7C --org X --node stray --role brain \
  --out stray
expect 1 tdsx bundle make --ca ca --registry reg.txt --serial 1 --creds stray --out b.unsigned
err_has 'stray'
absent b.unsigned

# make, then sign as the centre.
expect 0 tdsx bundle make --ca ca --registry reg.txt --serial 42 --valid 2h --policy-floor 2 \
  --creds centre --creds ent --witness $CENTRE/centre --out b.unsigned
out_has '^wrote b.unsigned'
expect 1 tdsx bundle sign --creds centre --in reg.txt --out b.tdsx
err_has 'TDSX_E_BUNDLE'
absent b.tdsx
expect 1 tdsx bundle sign --creds ent --in b.unsigned --out b.tdsx
err_has 'TDSX_E_CERT_ROLE'
absent b.tdsx
expect 0 tdsx bundle sign --creds centre --in b.unsigned --out b.tdsx
mode_is 644 b.tdsx
mkdir pub
expect 0 tdsx bundle sign --creds centre --in b.unsigned --publish pub
out_has '^wrote pub/bundle.tdsx'

# show: verified against the province root, with what a node would enforce.
expect 0 tdsx bundle show b.tdsx --anchor ca/root.pem
out_has '^serial +42$'
out_has '^policy_floor +2$'
out_has "^signer +$CENTRE/centre "
out_has "^member +$CENTRE/centre centre 127.0.0.1:7001 org=\"省级能力中心\""
out_has "^member +$ENT/ent enterprise 127.0.0.1:7002"
out_has '^crl +issuer'
out_has '^witness_key +[0-9a-f]{64}$'
out_has '^verified +yes'
# Without an anchor it is shown, and says it is not verified.
expect 0 tdsx bundle show b.tdsx
out_has '^verified +NO'
# Another CA's anchor, the unsigned file, a flipped byte: refused with exit 1.
expect 1 tdsx bundle show b.tdsx --anchor other/root.pem
err_has 'TDSX_E_CERT_UNTRUSTED'
expect 1 tdsx bundle show b.unsigned --anchor ca/root.pem
err_has 'TDSX_E_BUNDLE'
size=$(stat -c %s b.tdsx)
for off in 40 $((size / 2)) $((size - 10)); do
  cp b.tdsx t.tdsx
  byte=$(od -An -tu1 -j "$off" -N1 t.tdsx | tr -d ' ')
  printf "$(printf '\\%03o' $(((byte + 1) % 256)))" |
    dd of=t.tdsx bs=1 seek="$off" conv=notrunc status=none
  expect 1 tdsx bundle show t.tdsx --anchor ca/root.pem
  err_has 'TDSX_E_'
done

# An expired bundle still shows (with --anchor too), and says so; a floor above what this build
# enforces is warned about at make time.
expect 0 tdsx bundle make --ca ca --registry reg.txt --serial 45 --valid 1s --sign centre \
  --out e.tdsx
sleep 2
expect 0 tdsx bundle show e.tdsx --anchor ca/root.pem
out_has '^expires .*\(EXPIRED\)$'
out_has '^verified +yes'
expect 0 tdsx bundle make --ca ca --registry reg.txt --serial 46 --policy-floor 9 --out f.unsigned
err_has 'warning: .*policy floor 9 stops their exchange'

# One step: make --sign; a revoked centre cannot sign a bundle nodes accept (its own CRL).
expect 0 tdsx bundle make --ca ca --registry reg.txt --serial 43 --sign centre --out c.tdsx
expect 0 tdsx bundle show c.tdsx --anchor ca/root.pem --chain ca/intermediate.pem
out_has '^serial +43$'
expect 0 tdsx ca revoke --dir ca --cert centre/sign.pem
expect 0 tdsx bundle make --ca ca --registry reg.txt --serial 44 --sign centre --out d.tdsx
expect 1 tdsx bundle show d.tdsx --anchor ca/root.pem
err_has 'TDSX_E_CERT_REVOKED'

