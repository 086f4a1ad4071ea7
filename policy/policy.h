/*
 * policy.h — classification and grading tags (数据分类分级, SPEC §6), the category taxonomy,
 * and the node's exchange policy: its language, a pure evaluator with hard floors, a linter
 * and the normalised hash that trust-status reports carry (SPEC §8, §12).
 *
 * Nothing here does I/O except tdsx_taxonomy_load and tdsx_policy_load, which read the one
 * file they are given. Parsed objects (tdsx_taxonomy_t, tdsx_policy_t) are immutable: any
 * number of threads may read one at the same time, and a reload parses into a NEW object and
 * swaps the pointer, so the old object stays valid until its owner frees it.
 *
 * ------------------------------------------------------------------------------------------
 * The policy language
 *
 * One rule per line; `#` starts a comment that runs to the end of the line. First match wins;
 * a transfer that no rule matches is refused (default deny, rule id "default-deny").
 *
 *     [label] allow|deny CONDITION... [require REQ[,REQ...]]
 *     [label] allow|deny any          [require ...]
 *
 * Every condition narrows the rule; a condition that is absent matches everything. Lists are
 * comma-separated (spaces around commas are fine) and a value matches when it is any member.
 *
 *   grade ITEM,...      core | important | general (any level) | general:N | general:N-M |
 *                       general>=N | general<=N | general>N | general<N (N = 1..4) |
 *                       >=G | <=G | >G | <G on the whole scale, G = core | important |
 *                       general:N  (general:1 < ... < general:4 < important < core)
 *   domain D,...        rd production ops management external platform enterprise-mgmt
 *   category P,...      dotted prefix: P matches P itself and every path below it
 *   personal L,...      none personal sensitive-personal
 *   library L,...       base industry scenario
 *   source S,...        public industry enterprise
 *   to R,...            we send, and the counterpart's role is one of R (centre brain
 *                       enterprise, or `any`)
 *   from R,...          we receive, from one of R (or `any`)
 *   with R,...          either direction, counterpart role one of R
 *   direction send|receive
 *   peer ID,...         counterpart node id `<USCC>/<node-name>`, or a bare `<USCC>` for any
 *                       node of that organisation
 *   local R,...         our own role is one of R (lets one file serve several nodes)
 *   relay | direct      the transfer is (is not) a relay of data received from upstream
 *   purpose CODE,...    a valid agreement covers the transfer and its purpose code is listed
 *
 * Requirements (allow rules only) must hold for the rule to allow; the rule still decides,
 * so an allow rule whose requirement is not met refuses with its own id and a specific code:
 *   agreement           a valid agreement covers the transfer          (else TDSX_E_AGREEMENT)
 *   purpose             ... and it states a purpose code (implies agreement;
 *                                                                    else TDSX_E_POLICY_PURPOSE)
 *   seal                the payload is sealed for the final recipient   (else TDSX_E_POLICY_SEAL)
 *
 * Each condition appears at most once in a rule (`to`, `from` and `direction` all set the
 * direction; `to`, `from` and `with` all set the counterpart role); `any` stands alone;
 * `require` comes last; a deny rule has no requirements.
 *
 * Rule ids go into receipts: the label when one is given (`[r-core]`: letters, digits and
 * `._-`, at most 63 characters, starting with a letter or digit; "line-N", "default-deny"
 * and "invalid-input" are reserved), else `line-N` with N the rule's line number. Labels are
 * unique within a file. The normalised hash covers labels but not line-N ids, so give rules
 * labels when their ids must stay stable as the file is edited.
 *
 * The SPEC §8 example reads, in this language:
 *     deny  grade core
 *     allow grade important to centre       require agreement, seal
 *     allow grade general>=3 to brain,centre require agreement
 *     allow grade general<=2 library base to brain,centre
 *     deny  any
 *
 * ------------------------------------------------------------------------------------------
 * Hard floors (SPEC §8). Applied after the file's match, whatever the file says; a floor that
 * refuses is named as the rule id of the decision:
 *   floor:core-stays-home            core data never leaves its owner's node: refused in
 *                                    both directions (receiving it would mean it left)
 *   floor:important-needs-agreement  important data needs a valid agreement
 *   floor:important-needs-seal       ... and a sealed transfer
 *   floor:personal-needs-purpose     personal or sensitive-personal information needs a valid
 *                                    agreement that states a purpose
 * When the file refuses, its refusal stands (rule id of the file's rule). When an allow
 * rule's own requirements are not met, the rule refuses before the floors are looked at.
 * ---------------------------------------------------------------------------------------- */
#ifndef TDSX_POLICY_H
#define TDSX_POLICY_H

#include "core.h"

#include <stddef.h>
#include <stdint.h>

/* ------------------------------------------------------------------------------------------
 * Tags (SPEC §6). Enum values equal those of proto/tags.proto, so converting is a cast; 0 is
 * "not set", which no valid tag set contains.
 * ---------------------------------------------------------------------------------------- */
typedef enum {
    TDSX_GRADE_UNSET = 0,
    TDSX_GRADE_GENERAL = 1,   /* 一般数据, refined by tdsx_tags_t.level 1-4 */
    TDSX_GRADE_IMPORTANT = 2, /* 重要数据 */
    TDSX_GRADE_CORE = 3       /* 核心数据 */
} tdsx_grade_t;

typedef enum {
    TDSX_DOMAIN_UNSET = 0,
    TDSX_DOMAIN_RD = 1,             /* rd: 研发 */
    TDSX_DOMAIN_PRODUCTION = 2,     /* production: 生产 */
    TDSX_DOMAIN_OPS = 3,            /* ops: 运维 */
    TDSX_DOMAIN_MANAGEMENT = 4,     /* management: 管理 */
    TDSX_DOMAIN_EXTERNAL = 5,       /* external: 外部 */
    TDSX_DOMAIN_PLATFORM = 6,       /* platform: 平台运营 */
    TDSX_DOMAIN_ENTERPRISE_MGMT = 7 /* enterprise-mgmt: 企业管理 */
} tdsx_domain_t;
#define TDSX_DOMAIN_COUNT 7

typedef enum {
    TDSX_PERSONAL_UNSET = 0,
    TDSX_PERSONAL_NONE = 1,     /* none */
    TDSX_PERSONAL_PERSONAL = 2, /* personal: 个人信息 */
    TDSX_PERSONAL_SENSITIVE = 3 /* sensitive-personal: 敏感个人信息 */
} tdsx_personal_t;

typedef enum {
    TDSX_LIBRARY_UNSET = 0,
    TDSX_LIBRARY_BASE = 1,     /* base: 基础库 */
    TDSX_LIBRARY_INDUSTRY = 2, /* industry: 行业库 */
    TDSX_LIBRARY_SCENARIO = 3  /* scenario: 场景库 */
} tdsx_library_t;

typedef enum {
    TDSX_SOURCE_UNSET = 0,
    TDSX_SOURCE_PUBLIC = 1,    /* public: 公共数据 */
    TDSX_SOURCE_INDUSTRY = 2,  /* industry: 行业数据 */
    TDSX_SOURCE_ENTERPRISE = 3 /* enterprise: 企业数据 */
} tdsx_source_t;

/* Category paths: segments of [a-z0-9-] (1-32 characters, no leading or trailing '-')
 * joined by '.', at most TDSX_CATEGORY_DEPTH segments and TDSX_CATEGORY_MAX bytes; the first
 * segment is a domain name. */
#define TDSX_CATEGORY_MAX 127
#define TDSX_CATEGORY_DEPTH 8

typedef struct tdsx_tags_s {
    tdsx_grade_t grade;
    uint8_t level; /* 1-4 (4 most sensitive) when grade is GENERAL, else 0 */
    tdsx_domain_t domain;
    char category[TDSX_CATEGORY_MAX + 1]; /* NUL-terminated; starts with the domain */
    tdsx_personal_t personal;
    tdsx_library_t library;
    tdsx_source_t source;
} tdsx_tags_t;

/* Canonical names ("general", "enterprise-mgmt", "sensitive-personal", ...); "unset" for 0
 * and out-of-range values. Never NULL. */
const char *tdsx_grade_name(tdsx_grade_t g);
const char *tdsx_domain_name(tdsx_domain_t d);
const char *tdsx_personal_name(tdsx_personal_t p);
const char *tdsx_library_name(tdsx_library_t l);
const char *tdsx_source_name(tdsx_source_t s);
/* The inverse for n bytes at s (not NUL-terminated); TDSX_E_TAGS when not a name. */
TDSX_MUST_CHECK int tdsx_domain_parse(const char *s, size_t n, tdsx_domain_t *out);

/* 0 when `category` (NUL-terminated) is a well-formed path whose first segment is a domain,
 * else TDSX_E_TAGS. */
TDSX_MUST_CHECK int tdsx_category_check(const char *category);

/* 0 when the tag set is complete and consistent: every field set and in range, level 1-4 for
 * general and 0 otherwise, category well formed and under the tag's domain; else
 * TDSX_E_TAGS. Checks form only; see tdsx_taxonomy_check for membership. */
TDSX_MUST_CHECK int tdsx_tags_check(const tdsx_tags_t *t);

/* Text form, one `key=value` word per field separated by whitespace, in any order:
 *   grade=general:3 domain=production category=production.process.quality personal=none
 *   library=base source=enterprise
 * grade is core | important | general:N (N 1-4). All six keys are required, once each.
 *
 * Parse fills *out (only on success) and returns 0, or TDSX_E_TAGS with *err (may be NULL)
 * describing the FIRST problem: the offending word (a key, value or stray word) and a
 * message that quotes it. Input is read only through the cursor; it need not be
 * NUL-terminated. */
#define TDSX_TAGS_WORD_MAX 48
typedef struct tdsx_tags_error_s {
    size_t offset;                 /* byte offset of the offending word in the input */
    char word[TDSX_TAGS_WORD_MAX]; /* the word (truncated), or the missing key */
    char msg[160];                 /* e.g. "unknown domain 'prod'" */
} tdsx_tags_error_t;
TDSX_MUST_CHECK int tdsx_tags_parse(tdsx_bytes_t text, tdsx_tags_t *out, tdsx_tags_error_t *err);

/* Writes the canonical text (fixed key order as above, single spaces) into out. Returns 0,
 * TDSX_E_TAGS when *t does not pass tdsx_tags_check, or TDSX_E_TOOBIG when size is too small
 * (TDSX_TAGS_TEXT_MAX always suffices). out is NUL-terminated whenever size > 0. Parsing the
 * output gives back *t exactly. */
#define TDSX_TAGS_TEXT_MAX 256
TDSX_MUST_CHECK int tdsx_tags_format(const tdsx_tags_t *t, char *out, size_t size);

/* Sensitivity rank of the grade: general:1..4 -> 1..4, important -> 5, core -> 6; 0 when
 * the grade or level is invalid. */
int tdsx_tags_rank(const tdsx_tags_t *t);

/* Total order on tag sets, most sensitive last: by grade rank, then personal level, then
 * (only to make the order total) library, source, domain and category bytes. Returns <0, 0,
 * >0; 0 exactly when all fields are equal. Invalid sets (rank 0) sort first. */
int tdsx_tags_cmp(const tdsx_tags_t *a, const tdsx_tags_t *b);

/* Combines the tags of the parts of one dataset (就高从严, SPEC §6) into *out:
 *   grade, level   the highest rank among the parts
 *   personal       the highest level
 *   library        the furthest along base < industry < scenario
 *   source         the furthest along public < industry < enterprise
 *   domain         all parts must share one domain, else TDSX_E_TAGS — a dataset that mixes
 *                  domains is refused unless flags has TDSX_TAGS_MIXED_DOMAINS, in which case
 *                  domain and category are those of the most sensitive part (tdsx_tags_cmp
 *                  on grade and personal; the earliest part on a tie)
 *   category       the longest common dotted prefix of the parts' categories (at least the
 *                  domain), so the whole is described no more narrowly than any part
 * The order of library and source is one of strictness (a rule that allows `library base`
 * must not admit a dataset that is partly scenario data), not of sensitivity.
 * Returns 0, TDSX_E_INVAL (n == 0 or NULL), or TDSX_E_TAGS (a part fails tdsx_tags_check,
 * or domains differ). *out is written only on success and may alias no part. */
#define TDSX_TAGS_MIXED_DOMAINS 1u
TDSX_MUST_CHECK int tdsx_tags_combine(const tdsx_tags_t *parts, size_t n, unsigned flags,
                                      tdsx_tags_t *out);

/* ------------------------------------------------------------------------------------------
 * Diagnostics: what the policy and taxonomy parsers and the linter report. Each carries a
 * 1-based line and column (columns count UTF-8 characters, a tab counts as one) and a
 * message that quotes the offending word. At most TDSX_DIAGS_MAX are kept; later ones are
 * counted in `dropped`.
 * ---------------------------------------------------------------------------------------- */
typedef enum { TDSX_DIAG_ERROR = 0, TDSX_DIAG_WARNING = 1 } tdsx_diag_severity_t;

typedef enum {
    TDSX_DIAG_SYNTAX = 0,       /* malformed rule or line */
    TDSX_DIAG_UNKNOWN_WORD,     /* a word that is not a keyword or not a value of its list */
    TDSX_DIAG_BAD_VALUE,        /* a value of the right kind but malformed or out of range */
    TDSX_DIAG_DUPLICATE,        /* a label, condition or taxonomy path given twice */
    TDSX_DIAG_LIMIT,            /* a size limit exceeded */
    TDSX_DIAG_UNREACHABLE,      /* lint: every transfer this rule matches, an earlier one does */
    TDSX_DIAG_NEVER_MATCHES,    /* lint: conditions contradict each other */
    TDSX_DIAG_FLOOR_IMPOSSIBLE, /* lint: an allow that the floors always turn into a refusal */
    TDSX_DIAG_FLOOR_WEAKER,     /* lint: an allow that the floors restrict further */
    TDSX_DIAG_TAXONOMY,         /* lint: category not in the taxonomy */
    TDSX_DIAG_EMPTY             /* lint: no rules at all, everything is refused */
} tdsx_diag_kind_t;

#define TDSX_DIAG_MSG_MAX 200
#define TDSX_DIAGS_MAX 1000

typedef struct tdsx_diag_s {
    unsigned line;
    unsigned col;
    tdsx_diag_severity_t severity;
    tdsx_diag_kind_t kind;
    int code; /* TDSX_E_POLICY_PARSE, TDSX_E_TAXONOMY or TDSX_E_POLICY_DENY (lint) */
    char msg[TDSX_DIAG_MSG_MAX];
} tdsx_diag_t;

typedef struct tdsx_diags_s {
    tdsx_diag_t *v; /* n entries, in the order found (file order for parsers) */
    size_t n;
    size_t alloc;
    size_t dropped;
} tdsx_diags_t;

void tdsx_diags_init(tdsx_diags_t *d);
void tdsx_diags_free(tdsx_diags_t *d);
/* Number of entries of the given severity (dropped ones are not counted). */
size_t tdsx_diags_count(const tdsx_diags_t *d, tdsx_diag_severity_t severity);

/* ------------------------------------------------------------------------------------------
 * Taxonomy: the dotted category paths a node accepts (SPEC §6). File format, one path a line:
 *
 *     # comment (also after whitespace at the end of a line)
 *     production.process          工艺参数
 *     production.process.quality  质量数据
 *     rd.*                        研发 (open: any path below rd is accepted)
 *
 * The path's first segment must be a domain. An optional label (UTF-8, at most 128 bytes)
 * follows after whitespace. A path ending in `.*` is OPEN: it exists, and so does every path
 * below it. Parents are implied (production.process.quality declares production.process and
 * production). Declaring a path twice (open or not) is an error; declaring a path that an
 * earlier line only implied is not.
 * ---------------------------------------------------------------------------------------- */
typedef struct tdsx_taxonomy_s tdsx_taxonomy_t;

#define TDSX_TAXONOMY_FILE_MAX (1024 * 1024)
#define TDSX_TAXONOMY_LABEL_MAX 128

/* Parses text into a new taxonomy. Every problem is appended to diags (may be NULL) with
 * code TDSX_E_TAXONOMY; parsing goes on to the end. Returns 0 and *out, or TDSX_E_TAXONOMY
 * (any error; *out untouched), TDSX_E_NOMEM. */
TDSX_MUST_CHECK int tdsx_taxonomy_parse(tdsx_bytes_t text, tdsx_taxonomy_t **out,
                                        tdsx_diags_t *diags);
/* Reads a file (at most TDSX_TAXONOMY_FILE_MAX bytes) and parses it. Adds TDSX_E_NOTFOUND,
 * TDSX_E_TOOBIG and negated errno values to the parse errors. */
TDSX_MUST_CHECK int tdsx_taxonomy_load(const char *path, tdsx_taxonomy_t **out,
                                       tdsx_diags_t *diags);
/* The built-in default from the MIIT 工业数据分类分级指南（试行）: the seven domains and
 * rd.design 研发设计数据, rd.test 开发测试数据, production.control 控制信息,
 * production.condition 工况状态, production.process 工艺参数, production.syslog 系统日志,
 * ops.logistics 物流数据, ops.after-sales 产品售后服务数据, management.assets 系统设备资产信息,
 * management.customer-product 客户与产品信息, management.supply-chain 产品供应链数据,
 * management.statistics 业务统计数据, external.shared 与其他主体共享的数据,
 * platform.iot 物联采集数据, platform.knowledge-model 知识库模型库数据, platform.rd 研发数据,
 * enterprise-mgmt.customer 客户数据, enterprise-mgmt.cooperation 业务合作数据,
 * enterprise-mgmt.hr-finance 人事财务数据 — each category OPEN, so a sector may refine it
 * (production.process.quality) without a file. The domains alone are not open. */
TDSX_MUST_CHECK int tdsx_taxonomy_new_default(tdsx_taxonomy_t **out);
void tdsx_taxonomy_free(tdsx_taxonomy_t *t);

/* Entries (declared and implied), sorted by path. i < tdsx_taxonomy_count(t). The strings
 * live as long as the taxonomy; label is NULL when none was given. */
size_t tdsx_taxonomy_count(const tdsx_taxonomy_t *t);
void tdsx_taxonomy_entry(const tdsx_taxonomy_t *t, size_t i, const char **path, const char **label,
                         int *open);
/* 1 when the NUL-terminated path exists (declared, implied, or below an open entry). With
 * label not NULL, *label is the label of the nearest labelled entry found (may be NULL). */
int tdsx_taxonomy_has(const tdsx_taxonomy_t *t, const char *path, const char **label);
/* 0 when the tags pass tdsx_tags_check and their category is in the taxonomy; else
 * TDSX_E_TAGS. Does not allocate. */
TDSX_MUST_CHECK int tdsx_taxonomy_check(const tdsx_taxonomy_t *t, const tdsx_tags_t *tags);

/* ------------------------------------------------------------------------------------------
 * Policy
 * ---------------------------------------------------------------------------------------- */
typedef struct tdsx_policy_s tdsx_policy_t;

#define TDSX_POLICY_FILE_MAX (1024 * 1024)
#define TDSX_POLICY_RULES_MAX 4096
#define TDSX_POLICY_LIST_MAX 64 /* values in one condition's list */
#define TDSX_POLICY_ID_MAX 64   /* rule id length, NUL included */

/* Parses a policy into a new object. Reports EVERY error (line and column, code
 * TDSX_E_POLICY_PARSE) in diags (may be NULL) and returns TDSX_E_POLICY_PARSE when there is
 * any, leaving *out untouched; TDSX_E_NOMEM. An empty file (or one of only comments) is a
 * valid policy that refuses everything. */
TDSX_MUST_CHECK int tdsx_policy_parse(tdsx_bytes_t text, tdsx_policy_t **out, tdsx_diags_t *diags);
/* Reads a file (at most TDSX_POLICY_FILE_MAX bytes) and parses it; also TDSX_E_NOTFOUND,
 * TDSX_E_TOOBIG, negated errno. */
TDSX_MUST_CHECK int tdsx_policy_load(const char *path, tdsx_policy_t **out, tdsx_diags_t *diags);
void tdsx_policy_free(tdsx_policy_t *p);

/* Normalised text: a header comment, then one line per rule in file order, with single
 * spaces, conditions in a fixed order, each list sorted, deduplicated and reduced to its
 * meaning (grade general>=3 and grade general:3-4 both read `grade general:3-4`; a condition
 * that matches everything is dropped; category prefixes covered by another are dropped;
 * `purpose` implies `agreement`). Explicit labels are kept; `line-N` ids are not part of it,
 * so comments and blank lines do not change the text — label rules whose ids must stay
 * stable in receipts. The text parses back to a policy with the same hash. Valid as long as
 * the policy; *len (may be NULL) excludes the NUL. */
const char *tdsx_policy_canonical(const tdsx_policy_t *p, size_t *len);
/* SHA-256 of the normalised text (32 bytes, valid as long as the policy). */
const uint8_t *tdsx_policy_hash(const tdsx_policy_t *p);
/* The same as 64 lowercase hex digits and a NUL. */
void tdsx_policy_hash_hex(const tdsx_policy_t *p, char out[65]);

size_t tdsx_policy_rule_count(const tdsx_policy_t *p);
/* Rule i's id and line (i < count). The id lives as long as the policy. */
const char *tdsx_policy_rule_id(const tdsx_policy_t *p, size_t i);
unsigned tdsx_policy_rule_line(const tdsx_policy_t *p, size_t i);
/* Rule i's normalised line (as in tdsx_policy_canonical, with its id in brackets even when
 * it is `line-N`). TDSX_E_TOOBIG when it does not fit; out NUL-terminated when size > 0. */
TDSX_MUST_CHECK int tdsx_policy_rule_text(const tdsx_policy_t *p, size_t i, char *out, size_t size);

/* Lints a parsed policy, appending findings (severity WARNING, code TDSX_E_POLICY_DENY) to
 * diags in line order:
 *   - a rule every transfer of which an earlier single rule already matches (UNREACHABLE);
 *   - a rule whose conditions contradict each other, e.g. `domain rd category production`
 *     (NEVER_MATCHES);
 *   - an allow that the floors always refuse, e.g. `allow grade core` (FLOOR_IMPOSSIBLE);
 *   - an allow that names data the floors restrict without saying so: any grade and core,
 *     important without `require agreement, seal`, personal information without
 *     `require purpose`, or no grade condition at all (FLOOR_WEAKER);
 *   - a category not in the taxonomy, when tax is not NULL (TAXONOMY);
 *   - no rules (EMPTY).
 * A rule that can never match gets no floor findings. Shadowing is checked rule against
 * rule: a rule covered only by several earlier rules together is not reported. Category
 * prefixes that normalisation dropped (covered by another prefix of the same rule) are not
 * checked against the taxonomy.
 * Returns the number of findings (>= 0), TDSX_E_NOMEM, or TDSX_E_INVAL (p or diags NULL). */
TDSX_MUST_CHECK int tdsx_policy_lint(const tdsx_policy_t *p, const tdsx_taxonomy_t *tax,
                                     tdsx_diags_t *diags);

/* ------------------------------------------------------------------------------------------
 * Evaluation
 * ---------------------------------------------------------------------------------------- */
typedef enum { TDSX_DIR_UNSET = 0, TDSX_DIR_SEND = 1, TDSX_DIR_RECEIVE = 2 } tdsx_direction_t;

/* Node roles. The values equal certs.h's tdsx_role_t (centre 1, brain 2, enterprise 3), so
 * converting is a cast; the policy module does not depend on certs/. */
typedef enum {
    TDSX_POLICY_ROLE_NONE = 0,
    TDSX_POLICY_ROLE_CENTRE = 1,
    TDSX_POLICY_ROLE_BRAIN = 2,
    TDSX_POLICY_ROLE_ENTERPRISE = 3
} tdsx_policy_role_t;
/* "centre", "brain", "enterprise"; "none" otherwise. */
const char *tdsx_policy_role_name(tdsx_policy_role_t r);
/* Parses one of the three names (NUL-terminated); TDSX_E_INVAL otherwise. */
TDSX_MUST_CHECK int tdsx_policy_role_parse(const char *s, tdsx_policy_role_t *out);

typedef enum {
    TDSX_AGREEMENT_NONE = 0,      /* no agreement covers the transfer */
    TDSX_AGREEMENT_VALID = 1,     /* both parties signed identical terms, in force now */
    TDSX_AGREEMENT_EXPIRED = 2,   /* one existed but is past not-after */
    TDSX_AGREEMENT_TERMINATED = 3 /* one existed but was terminated */
} tdsx_agreement_state_t;

/* Requirements, as a bit set. */
#define TDSX_POLICY_REQ_AGREEMENT 1u
#define TDSX_POLICY_REQ_PURPOSE 2u
#define TDSX_POLICY_REQ_SEAL 4u

/* Floors, as a bit set (see the list at the top of this header). */
#define TDSX_FLOOR_CORE_STAYS_HOME 1u
#define TDSX_FLOOR_IMPORTANT_AGREEMENT 2u
#define TDSX_FLOOR_IMPORTANT_SEAL 4u
#define TDSX_FLOOR_PERSONAL_PURPOSE 8u
/* "floor:core-stays-home", ...; NULL for anything but a single floor bit. */
const char *tdsx_floor_id(unsigned floor);

typedef struct tdsx_policy_input_s {
    tdsx_direction_t direction;
    tdsx_policy_role_t local_role;
    tdsx_policy_role_t peer_role;
    const char *peer_id;     /* "<USCC>/<node-name>"; NULL when unknown */
    const tdsx_tags_t *tags; /* must pass tdsx_tags_check */
    tdsx_agreement_state_t agreement;
    const char *purpose; /* the valid agreement's purpose code; NULL or "" if none */
    int sealed;          /* 1 when the payload is sealed for the final recipient */
    int relay;           /* 1 when relaying data received from upstream */
} tdsx_policy_input_t;

typedef struct tdsx_policy_decision_s {
    int allow; /* 1 allow, 0 deny */
    /* The rule that decided, for the receipt: a file rule id, a floor id, "default-deny" or
     * "invalid-input". Lives as long as the policy (or is static). */
    const char *rule_id;
    unsigned line; /* line of the deciding file rule; 0 for floors and defaults */
    /* The file rule that matched (also when a floor then refused); NULL and 0 when none. */
    const char *matched_id;
    unsigned matched_line;
    /* 0 when allowed; else TDSX_E_POLICY_DENY (a deny rule, default deny, core floor),
     * TDSX_E_AGREEMENT, TDSX_E_AGREEMENT_EXPIRED, TDSX_E_AGREEMENT_TERMINATED (agreement
     * needed), TDSX_E_POLICY_PURPOSE, TDSX_E_POLICY_SEAL, TDSX_E_TAGS or TDSX_E_INVAL
     * (input unusable). */
    int code;
    /* Short static text fit to send to the counterpart: says what was missing, never the
     * policy's content. */
    const char *reason;
    unsigned floor;    /* the floor that refused (one bit), or 0 */
    unsigned floors;   /* every floor that applies to these tags, whether met or not */
    unsigned required; /* TDSX_POLICY_REQ_* needed by the matched allow rule and the floors */
    unsigned missing;  /* those of `required` the input does not meet */
} tdsx_policy_decision_t;

/* Decides one transfer: first matching rule, then its requirements, then the floors. A pure
 * function of its arguments: no allocation, no I/O, no global state. *out is always filled.
 * Returns 0 when allowed, else out->code (negative) — so any failure refuses. p must not be
 * NULL; in and its tags must not be NULL (else TDSX_E_INVAL, rule id "invalid-input"). */
TDSX_MUST_CHECK int tdsx_policy_eval(const tdsx_policy_t *p, const tdsx_policy_input_t *in,
                                     tdsx_policy_decision_t *out);

#endif
