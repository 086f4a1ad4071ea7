#!/usr/bin/env bash
# tdsx policy check | explain with the real binary: findings with FILE:LINE:COL, the policy
# hash, decisions with their rule ids and floors, and exit codes (0 clean or allowed, 1
# problems or refused, 2 could not run).
set -euo pipefail
. "$(dirname "$0")/lib.sh"

DATA=${TDSX_TEST_DATA:?}/policy
SPEC=$DATA/spec.policy
IMPORTANT="grade=important domain=production category=production.process.quality personal=none library=base source=enterprise"
GENERAL3="grade=general:3 domain=production category=production.process.quality personal=none library=base source=enterprise"
CORE="grade=core domain=rd category=rd.design personal=none library=base source=enterprise"

for c in "policy check" "policy explain"; do
  # shellcheck disable=SC2086
  expect 0 tdsx $c --help
  out_has "^usage: tdsx $c"
done

# ---- check: clean files print the hash; equivalent files print the same one.
expect 0 tdsx policy check "$SPEC"
out_has "spec.policy: ok, 5 rules, policy sha256:[0-9a-f]{64}$"
hash_spec=$(sed -n 's/.*sha256:\([0-9a-f]*\)$/\1/p' out)
[ ! -s err ] || { echo "FAIL: unexpected stderr" >&2; cat err >&2; exit 1; }
expect 0 tdsx policy check "$DATA/spec-reformatted.policy"
hash_ref=$(sed -n 's/.*sha256:\([0-9a-f]*\)$/\1/p' out)
[ "$hash_spec" = "$hash_ref" ] || { echo "FAIL: equivalent policies hash differently" >&2; exit 1; }

# The hash is the SHA-256 of the normalised text --normalised prints.
expect 0 tdsx policy check --normalised "$SPEC"
out_has '^# tdsx policy v1 \(normalised\)$'
out_has '^allow grade general:3-4 to centre,brain require agreement$'
sed -n '/^# tdsx policy v1/,$p' out >normalised
[ "$(sha256sum normalised | cut -d' ' -f1)" = "$hash_spec" ] ||
  { echo "FAIL: hash is not the SHA-256 of the normalised text" >&2; exit 1; }

# A semantic change hashes differently.
sed 's/general>=3/general>=2/' "$SPEC" >changed.policy
expect 0 tdsx policy check changed.policy
out_has 'ok, 5 rules'
grep -q "$hash_spec" out && { echo "FAIL: changed policy kept the hash" >&2; exit 1; }

# ---- check: every syntax error, with line and column, exit 1.
expect 1 tdsx policy check "$DATA/bad.policy"
out_has "bad.policy:3:26: error: unknown role 'centr'"
out_has "bad.policy:4:1: error: unknown word 'permit'"
out_has "bad.policy:5:22: error: general level '5' is not 1 to 4"
out_has "bad.policy:5:31: error: unknown domain 'prod'"
out_has "bad.policy:6:45: error: missing ',' before 'centre'"
out_has "bad.policy:7:5: error: rule has no conditions"
out_has 'bad.policy: 6 errors, 0 warnings$'
grep -q sha256 out && { echo "FAIL: a bad policy printed a hash" >&2; exit 1; }

# ---- check: unreachable rules and rules the floors weaken, exit 1.
expect 1 tdsx policy check "$DATA/shadowed.policy"
out_has "shadowed.policy:5:1: warning: rule line-5: unreachable: rule line-3 on line 3"
out_has "shadowed.policy:6:1: warning: rule line-6: allows every grade"
out_has "shadowed.policy:7:1: warning: rule line-7: unreachable: rule line-6 on line 6"
out_has '0 errors, 3 warnings$'

printf '# core cannot be allowed\n[r-core]  allow grade core to centre require agreement, seal\n' >core.policy
expect 1 tdsx policy check core.policy
out_has "core.policy:2:17: warning: rule r-core: never allows anything: core data never leaves its owner's node \(floor:core-stays-home\)"

printf 'allow grade important to centre\n' >weak.policy
expect 1 tdsx policy check weak.policy
out_has 'weak.policy:1:7: warning: .*floor:important-needs-agreement, floor:important-needs-seal'

# ---- check: categories against the built-in or a given taxonomy.
printf 'deny category production.process.quality\nallow grade general:1 category production.paint\n' >cat.policy
expect 1 tdsx policy check cat.policy
out_has "cat.policy:2:23: warning: rule line-2: category 'production.paint' is not in the taxonomy"
printf 'production.paint 涂装\nproduction.process.*\n' >sector.taxonomy
expect 0 tdsx policy check cat.policy --taxonomy sector.taxonomy
out_has 'cat.policy: ok, 2 rules'

# ---- check: could not run.
expect 2 tdsx policy check "$DATA/no-such.policy"
err_has 'TDSX_E_NOTFOUND'
expect 2 tdsx policy check "$SPEC" --taxonomy "$DATA/bad.taxonomy"
err_has 'bad.taxonomy:3:1: error: .*factory.line'
err_has 'TDSX_E_TAXONOMY'
expect 2 tdsx policy check "$SPEC" --taxonomy no-such.taxonomy
err_has 'TDSX_E_NOTFOUND'
expect 2 tdsx policy check
err_has 'exactly one policy FILE'
expect 2 tdsx policy check "$SPEC" "$SPEC"
expect 2 tdsx policy check --bogus "$SPEC"
err_has "unknown option '--bogus'"
expect 2 tdsx policy check "$SPEC" --taxonomy
err_has 'needs a value'

# ---- explain: allowed, with the rule and what it required.
expect 0 tdsx policy explain "$SPEC" --direction send --peer-role centre \
  --tags "$IMPORTANT" --agreement valid:P-QUALITY --sealed
out_has '^decision: allow$'
out_has '^rule: +r-important-to-centre \(line 3\)$'
out_has '^matched: +r-important-to-centre \(line 3\): \[r-important-to-centre\] allow grade important to centre require agreement,seal$'
out_has '^requires: agreement, seal$'
out_has '^missing: +none$'
out_has "^policy: +sha256:$hash_spec$"

# Refused by the rule's own requirement: named by the rule, specific code.
expect 1 tdsx policy explain "$SPEC" --direction send --peer-role centre \
  --tags "$IMPORTANT" --agreement valid:P-QUALITY
out_has '^decision: deny$'
out_has '^rule: +r-important-to-centre \(line 3\)$'
out_has 'TDSX_E_POLICY_SEAL'
out_has '^missing: +seal$'
expect 1 tdsx policy explain "$SPEC" --direction send --peer-role brain --tags "$GENERAL3"
out_has '^rule: +line-4 \(line 4\)$'
out_has 'TDSX_E_AGREEMENT\)$'
expect 0 tdsx policy explain "$SPEC" --direction send --peer-role brain --tags "$GENERAL3" \
  --agreement valid
out_has '^rule: +line-4 \(line 4\)$'

# Refused by a deny rule, and by default when nothing matches.
expect 1 tdsx policy explain "$SPEC" --direction send --peer-role enterprise --tags "$GENERAL3"
out_has '^rule: +line-6 \(line 6\)$'
out_has '^matched: +line-6 \(line 6\): \[line-6\] deny any$'
printf 'allow grade general:1 to brain\n' >narrow.policy
expect 1 tdsx policy explain narrow.policy --direction send --peer-role brain --tags "$GENERAL3"
out_has '^rule: +default-deny$'
out_has '^matched: +none'

# The floors hold against a file that allows everything, and are named.
expect 1 tdsx policy explain "$DATA/permissive.policy" --direction send --peer-role centre \
  --tags "$CORE" --agreement valid:P1 --sealed
out_has '^rule: +floor:core-stays-home$'
out_has '^matched: +line-2 \(line 2\)'
out_has "core data never leaves its owner's node"
expect 1 tdsx policy explain "$DATA/permissive.policy" --direction receive --peer-role brain \
  --tags "$CORE" --agreement valid:P1 --sealed --relay
out_has '^rule: +floor:core-stays-home$'
expect 1 tdsx policy explain "$DATA/permissive.policy" --direction send --peer-role centre \
  --tags "$IMPORTANT" --agreement valid
out_has '^rule: +floor:important-needs-seal$'
out_has 'floor:important-needs-agreement \(met\), floor:important-needs-seal \(not met\)'
expect 1 tdsx policy explain "$DATA/permissive.policy" --direction send --peer-role centre \
  --tags "$IMPORTANT" --agreement expired --sealed
out_has '^rule: +floor:important-needs-agreement$'
out_has 'TDSX_E_AGREEMENT_EXPIRED'
expect 1 tdsx policy explain "$DATA/permissive.policy" --direction send --peer-role brain \
  --tags "${GENERAL3/personal=none/personal=sensitive-personal}" --agreement valid
out_has '^rule: +floor:personal-needs-purpose$'
out_has 'TDSX_E_POLICY_PURPOSE'
expect 0 tdsx policy explain "$DATA/permissive.policy" --direction send --peer-role brain \
  --tags "${GENERAL3/personal=none/personal=sensitive-personal}" --agreement valid:P1
out_has '^decision: allow$'

# Peer, local role and relay conditions reach the evaluator.
printf '[p] allow peer 91350100M000100Y43 local enterprise relay\n' >peer.policy
expect 0 tdsx policy explain peer.policy --direction send --peer-role brain --tags "$GENERAL3" \
  --peer 91350100M000100Y43/brain-1 --local-role enterprise --relay
out_has '^rule: +p \(line 1\)$'
expect 1 tdsx policy explain peer.policy --direction send --peer-role brain --tags "$GENERAL3" \
  --peer 91350100M000100Y43/brain-1 --local-role enterprise
out_has '^rule: +default-deny$'
expect 1 tdsx policy explain peer.policy --direction send --peer-role brain --tags "$GENERAL3" \
  --peer 91350100M000100Y43/brain-1 --relay
out_has '^rule: +default-deny$'

# ---- explain: could not run.
expect 2 tdsx policy explain "$SPEC" --direction send --peer-role centre
err_has 'are required'
expect 2 tdsx policy explain "$SPEC" --direction sideways --peer-role centre --tags "$CORE"
err_has "send or receive, not 'sideways'"
expect 2 tdsx policy explain "$SPEC" --direction send --peer-role king --tags "$CORE"
err_has "not 'king'"
expect 2 tdsx policy explain "$SPEC" --direction send --peer-role brain --tags "$CORE" \
  --local-role queen
expect 2 tdsx policy explain "$SPEC" --direction send --peer-role brain --tags "$CORE" \
  --agreement maybe
err_has "not 'maybe'"
expect 2 tdsx policy explain "$SPEC" --direction send --peer-role brain --tags "grade=core"
err_has "missing key 'domain'.*TDSX_E_TAGS"
expect 2 tdsx policy explain "$SPEC" --direction send --peer-role brain \
  --tags "${GENERAL3/production.process.quality/production.paint}"
err_has "category 'production.paint' is not in the taxonomy"
expect 2 tdsx policy explain "$DATA/bad.policy" --direction send --peer-role brain \
  --tags "$GENERAL3"
err_has 'bad.policy:3:26: error'
err_has 'TDSX_E_POLICY_PARSE'
expect 2 tdsx policy explain "$DATA/no-such.policy" --direction send --peer-role brain \
  --tags "$GENERAL3"
err_has 'TDSX_E_NOTFOUND'
expect 2 tdsx policy explain --direction send --peer-role brain --tags "$GENERAL3"
err_has 'exactly one policy FILE'

echo "cli policy: ok"
