/*
 * tdsx log status | proof | consistency | verify-proof — the node's transparency log (SPEC §11).
 *
 * proof and consistency print a proof file that verify-proof checks offline, trusting nothing
 * but the key it is given:
 *
 *     tdsx-log-proof v1
 *     inclusion                     | consistency
 *     index <N>                     | from <M>
 *     entry <hex of the entry>      | from-root <hex of the root of the first M entries>
 *     hash <hex>                    (one line per hash of the path or proof, RFC 9162 order)
 *     checkpoint
 *     <the signed checkpoint the proof leads to, verbatim, to the end of the file>
 */
#include "cli.h"
#include "daemon.h"
#include "log.h"
#include "tlog.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#define LOG_TIMEOUT_MS 30000
#define PROOF_FILE_CAP (2u * TDSX_TLOG_ENTRY_MAX + 16u * 1024u + TDSX_NOTE_MAX)
#define PROOF_MAGIC "tdsx-log-proof v1\n"

typedef struct {
    const char *cmd, *sock, *conf, *out;
} target_t;

/* An Error answer: an index or size the log does not hold is refused; the rest could not run. */
static int log_error_exit(int rc)
{
    return rc == TDSX_E_NOTFOUND ? TDSX_EXIT_INVALID : TDSX_EXIT_ERROR;
}

/* Asks the daemon (tdsx__cli_ask); on success *resp lives in *arena (the caller frees it). */
static int call(const target_t *t, Tdsx__LocalRequest *req, tdsx_arena_t **arena,
                Tdsx__LocalResponse **resp)
{
    tdsx_cli_target_t ct = {t->cmd, t->sock, t->conf};
    return tdsx__cli_ask(&ct, req, LOG_TIMEOUT_MS, 0, log_error_exit, arena, resp);
}

static void print_hex_line(FILE *f, const char *label, const uint8_t *p, size_t n)
{
    char hex[2 * 256 + 1];
    fprintf(f, "%s ", label);
    for (size_t i = 0; i < n; i += 256) {
        size_t k = n - i < 256 ? n - i : 256;
        tdsx_hex_encode(hex, p + i, k);
        fputs(hex, f);
    }
    fputc('\n', f);
}

/* Parses the common options; returns -1 to go on, else an exit code. */
static int parse_opts(int argc, char **argv, target_t *t, const char *usage, uint64_t *num,
                      const char *num_name, char **cp_out, char **cos_out)
{
    static const struct option opts[] = {{"socket", required_argument, NULL, 'S'},
                                         {"config", required_argument, NULL, 'c'},
                                         {"out", required_argument, NULL, 'o'},
                                         {"index", required_argument, NULL, 'i'},
                                         {"from", required_argument, NULL, 'f'},
                                         {"checkpoint-out", required_argument, NULL, 'P'},
                                         {"cosigned-out", required_argument, NULL, 'C'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    int o, have = 0;
    optind = 1;
    while ((o = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
        switch (o) {
        case 'S': t->sock = optarg; break;
        case 'c': t->conf = optarg; break;
        case 'h': fputs(usage, stdout); return TDSX_EXIT_OK;
        case 'o':
            if (!num_name)
                return tdsx_cli_usage(t->cmd, "--out is for proofs");
            t->out = optarg;
            break;
        case 'i':
        case 'f':
            if (!num_name || strcmp(num_name, o == 'i' ? "index" : "from") != 0)
                return tdsx_cli_usage(t->cmd, "--%s does not apply here",
                                      o == 'i' ? "index" : "from");
            if (tdsx__cli_u64(optarg, 0, UINT64_MAX, num) != 0)
                return tdsx_cli_usage(t->cmd, "--%s: '%s' is not a whole number", num_name, optarg);
            have = 1;
            break;
        case 'P':
        case 'C':
            if (!cp_out)
                return tdsx_cli_usage(t->cmd, "that option is for status");
            *(o == 'P' ? cp_out : cos_out) = optarg;
            break;
        default: return tdsx_cli_usage(t->cmd, "unknown option");
        }
    }
    if (optind != argc)
        return tdsx_cli_usage(t->cmd, "unexpected argument '%s'", argv[optind]);
    if (num_name && !have)
        return tdsx_cli_usage(t->cmd, "--%s is required", num_name);
    return -1;
}

/* ---- status -----------------------------------------------------------------------------------
 */

/* "size N" and the origin of a checkpoint note, without verifying it (the daemon did). */
static void print_note_line(const char *label, const ProtobufCBinaryData *note, const char *who)
{
    tdsx_note_t *n = NULL;
    tdsx_checkpoint_t cp;
    if (note->len == 0 || tdsx_note_parse(tdsx_bytes(note->data, note->len), &n) != 0 ||
        tdsx_checkpoint_parse(tdsx_note_text(n), &cp) != 0) {
        printf("%-12s-\n", label);
        tdsx_note_free(n);
        return;
    }
    uint64_t ts = 0;
    /* A cosignature/v1 line starts with its big-endian timestamp (c2sp.org/tlog-cosignature). */
    for (size_t i = 0; who && *who && i < tdsx_note_sig_count(n); i++) {
        const tdsx_note_sig_t *s = tdsx_note_sig(n, i);
        if (s->sig.n == 72 && s->name.n == strlen(who) && memcmp(s->name.p, who, s->name.n) == 0)
            for (int k = 0; k < 8; k++)
                ts = ts << 8 | s->sig.p[k];
    }
    char hex[2 * TDSX_HASH_LEN + 1];
    tdsx_hex_encode(hex, cp.root.b, TDSX_HASH_LEN);
    printf("%-12ssize %" PRIu64 ", root %.16s..., %zu signature%s\n", label, cp.size, hex,
           tdsx_note_sig_count(n), tdsx_note_sig_count(n) == 1 ? "" : "s");
    if (ts)
        tdsx__cli_print_time(12, "", (int64_t)ts);
    tdsx_note_free(n);
}

static int save_note(const char *cmd, const char *path, const ProtobufCBinaryData *note)
{
    if (!path)
        return 0;
    if (note->len == 0) {
        fprintf(stderr, "tdsx %s: nothing to write to %s yet\n", cmd, path);
        return TDSX_EXIT_INVALID;
    }
    int rc = tdsx_file_write(path, note->data, note->len, 0644, 1);
    return rc ? tdsx_cli_fail(cmd, rc, path) : 0;
}

int tdsx_cmd_log_status(int argc, char **argv)
{
    target_t t = {argv[0], NULL, NULL, NULL};
    char *cp_out = NULL, *cos_out = NULL;
    int code = parse_opts(
        argc, argv, &t,
        "usage: tdsx log status [--socket PATH | -c CONFIG] [--checkpoint-out FILE]\n"
        "                       [--cosigned-out FILE]\n"
        "Shows the node's transparency log (SPEC 11): its size and root, the latest signed\n"
        "checkpoint, the last one published, the last one its witness (the centre) cosigned and\n"
        "what the witness said, the log's verifier key; on the centre, how many checkpoints it\n"
        "cosigned and refused as a witness. --checkpoint-out and --cosigned-out save those notes\n"
        "(for `tdsx log verify-proof --old-checkpoint`).\n"
        "Exit 0 when the daemon answered, 2 when it could not be reached.\n",
        NULL, NULL, &cp_out, &cos_out);
    if (code >= 0)
        return code;
    Tdsx__LocalRequest req = TDSX__LOCAL_REQUEST__INIT;
    Tdsx__LogStatusRequest q = TDSX__LOG_STATUS_REQUEST__INIT;
    req.body_case = TDSX__LOCAL_REQUEST__BODY_LOG_STATUS;
    req.log_status = &q;
    tdsx_arena_t *arena = NULL;
    Tdsx__LocalResponse *resp = NULL;
    if ((code = call(&t, &req, &arena, &resp)) != 0)
        return code;
    const Tdsx__LogStatusResponse *st = resp->log_status;
    if (resp->body_case != TDSX__LOCAL_RESPONSE__BODY_LOG_STATUS) {
        tdsx_arena_free(arena);
        return tdsx_cli_fail(t.cmd, TDSX_E_PROTOCOL, "unexpected answer");
    }
    printf("%-12s%" PRIu64 "\n", "size", st->size);
    if (st->root.len == TDSX_HASH_LEN)
        print_hex_line(stdout, "root       ", st->root.data, st->root.len);
    print_note_line("checkpoint", &st->checkpoint, NULL);
    print_note_line("published", &st->published, NULL);
    print_note_line("cosigned", &st->cosigned, st->witness);
    printf("%-12s%s%s%s%s\n", "witness", *st->witness ? st->witness : "none",
           *st->witness_state ? " (" : "", st->witness_state, *st->witness_state ? ")" : "");
    printf("%-12s%" PRIu64 " queued, %" PRIu64 " appended since start\n", "entries", st->queued,
           st->appended);
    if (st->witnessed_nodes || st->witness_cosigned || st->witness_refused)
        printf("%-12s%" PRIu64 " nodes; since start %" PRIu64 " cosigned, %" PRIu64 " refused\n",
               "witnessing", st->witnessed_nodes, st->witness_cosigned, st->witness_refused);
    printf("%-12s%s\n", "vkey", st->vkey);
    if (*st->error)
        printf("%-12s%s: appends stopped\n", "error", st->error);
    code = save_note(t.cmd, cp_out, &st->checkpoint);
    if (code == 0)
        code = save_note(t.cmd, cos_out, &st->cosigned);
    tdsx_arena_free(arena);
    return code;
}

/* ---- proof, consistency -----------------------------------------------------------------------
 */

static int write_proof(const target_t *t, const Tdsx__LogProofResponse *p)
{
    FILE *f = t->out ? fopen(t->out, "w") : stdout;
    if (!f)
        return tdsx_cli_fail(t->cmd, TDSX_E_IO, t->out);
    fputs(PROOF_MAGIC, f);
    if (p->consistency) {
        fprintf(f, "consistency\nfrom %" PRIu64 "\n", p->from);
        print_hex_line(f, "from-root", p->from_root.data, p->from_root.len);
    } else {
        fprintf(f, "inclusion\nindex %" PRIu64 "\n", p->index);
        print_hex_line(f, "entry", p->entry.data, p->entry.len);
    }
    for (size_t i = 0; i < p->n_hashes; i++)
        print_hex_line(f, "hash", p->hashes[i].data, p->hashes[i].len);
    fputs("checkpoint\n", f);
    fwrite(p->checkpoint.data, 1, p->checkpoint.len, f);
    int bad = ferror(f);
    if (t->out && fclose(f) != 0)
        bad = 1;
    if (bad)
        return tdsx_cli_fail(t->cmd, TDSX_E_IO, t->out ? t->out : "stdout");
    if (t->out) {
        if (!p->consistency) {
            char what[512];
            tdsx__log_entry_describe(tdsx_bytes(p->entry.data, p->entry.len), what, sizeof what);
            printf("entry      %" PRIu64 ": %s\n", p->index, what);
        }
        printf("proof      %s (%zu hashes)\n", t->out, p->n_hashes);
    }
    return TDSX_EXIT_OK;
}

static int run_proof(int argc, char **argv, int consistency)
{
    target_t t = {argv[0], NULL, NULL, NULL};
    uint64_t num = 0;
    int code = parse_opts(
        argc, argv, &t,
        consistency
            ? "usage: tdsx log consistency --from M [--out FILE] [--socket PATH | -c CONFIG]\n"
              "Prints the RFC 9162 consistency proof from the log's first M entries to its\n"
              "latest signed checkpoint, as a proof file for `tdsx log verify-proof`.\n"
              "Exit 0 printed, 1 M is beyond the checkpoint, 2 could not run.\n"
            : "usage: tdsx log proof --index N [--out FILE] [--socket PATH | -c CONFIG]\n"
              "Prints entry N and its RFC 9162 inclusion proof in the latest signed\n"
              "checkpoint, as a proof file for `tdsx log verify-proof`.\n"
              "Exit 0 printed, 1 no such entry, 2 could not run.\n",
        &num, consistency ? "from" : "index", NULL, NULL);
    if (code >= 0)
        return code;
    Tdsx__LocalRequest req = TDSX__LOCAL_REQUEST__INIT;
    Tdsx__LogProofRequest pq = TDSX__LOG_PROOF_REQUEST__INIT;
    Tdsx__LogConsistencyRequest cq = TDSX__LOG_CONSISTENCY_REQUEST__INIT;
    if (consistency) {
        cq.from = num;
        req.body_case = TDSX__LOCAL_REQUEST__BODY_LOG_CONSISTENCY;
        req.log_consistency = &cq;
    } else {
        pq.index = num;
        req.body_case = TDSX__LOCAL_REQUEST__BODY_LOG_PROOF;
        req.log_proof = &pq;
    }
    tdsx_arena_t *arena = NULL;
    Tdsx__LocalResponse *resp = NULL;
    if ((code = call(&t, &req, &arena, &resp)) != 0)
        return code;
    if (resp->body_case != TDSX__LOCAL_RESPONSE__BODY_LOG_PROOF) {
        tdsx_arena_free(arena);
        return tdsx_cli_fail(t.cmd, TDSX_E_PROTOCOL, "unexpected answer");
    }
    code = write_proof(&t, resp->log_proof);
    tdsx_arena_free(arena);
    return code;
}

int tdsx_cmd_log_proof(int argc, char **argv)
{
    return run_proof(argc, argv, 0);
}

int tdsx_cmd_log_consistency(int argc, char **argv)
{
    return run_proof(argc, argv, 1);
}

/* ---- verify-proof -----------------------------------------------------------------------------
 */

typedef struct {
    int consistency;
    uint64_t num; /* index or from */
    uint8_t *entry;
    size_t entry_len;
    tdsx_hash_t from_root;
    tdsx_hash_t hashes[TDSX_MERKLE_CONSISTENCY_MAX];
    size_t nhashes;
    tdsx_bytes_t note;
} proof_t;

/* The next line without its newline; TDSX_E_FORMAT when there is none. */
static int next_line(tdsx_bytes_t *in, tdsx_bytes_t *line)
{
    const uint8_t *nl = in->n ? memchr(in->p, '\n', in->n) : NULL;
    if (!nl)
        return TDSX_E_FORMAT;
    size_t len = (size_t)(nl - in->p);
    if (tdsx_bytes_take(in, len, line) != 0 || tdsx_bytes_skip(in, 1) != 0)
        return TDSX_E_FORMAT;
    return 0;
}

/* "<key> <value>": *value points after the space. */
static int keyed(tdsx_bytes_t line, const char *key, tdsx_bytes_t *value)
{
    size_t k = strlen(key);
    if (line.n <= k + 1 || memcmp(line.p, key, k) != 0 || line.p[k] != ' ')
        return 0;
    *value = tdsx_bytes(line.p + k + 1, line.n - k - 1);
    return 1;
}

static int hex_value(tdsx_bytes_t v, uint8_t *out, size_t n)
{
    char buf[2 * TDSX_HASH_LEN + 1];
    if (v.n != 2 * n || n > TDSX_HASH_LEN)
        return TDSX_E_FORMAT;
    memcpy(buf, v.p, v.n);
    buf[v.n] = '\0';
    return tdsx_hex_decode(out, n, buf);
}

static int num_value(tdsx_bytes_t v, uint64_t *out)
{
    char buf[24];
    if (v.n == 0 || v.n >= sizeof buf || (v.n > 1 && v.p[0] == '0'))
        return TDSX_E_FORMAT;
    memcpy(buf, v.p, v.n);
    buf[v.n] = '\0';
    return tdsx__cli_u64(buf, 0, UINT64_MAX, out) == 0 ? 0 : TDSX_E_FORMAT;
}

static int parse_proof(tdsx_bytes_t in, proof_t *p)
{
    tdsx_bytes_t line, v;
    size_t magic = sizeof PROOF_MAGIC - 1;
    if (in.n < magic || memcmp(in.p, PROOF_MAGIC, magic) != 0 || tdsx_bytes_skip(&in, magic) != 0)
        return TDSX_E_FORMAT;
    if (next_line(&in, &line) != 0)
        return TDSX_E_FORMAT;
    if (line.n == 9 && memcmp(line.p, "inclusion", 9) == 0)
        p->consistency = 0;
    else if (line.n == 11 && memcmp(line.p, "consistency", 11) == 0)
        p->consistency = 1;
    else
        return TDSX_E_FORMAT;
    if (next_line(&in, &line) != 0 || !keyed(line, p->consistency ? "from" : "index", &v) ||
        num_value(v, &p->num) != 0 || next_line(&in, &line) != 0)
        return TDSX_E_FORMAT;
    if (p->consistency) {
        if (!keyed(line, "from-root", &v) || hex_value(v, p->from_root.b, TDSX_HASH_LEN) != 0)
            return TDSX_E_FORMAT;
    } else {
        if (!keyed(line, "entry", &v) || v.n % 2 || v.n / 2 > TDSX_TLOG_ENTRY_MAX)
            return TDSX_E_FORMAT;
        p->entry_len = v.n / 2;
        char *hex = tdsx_malloc(v.n + 1);
        p->entry = tdsx_malloc(p->entry_len + 1);
        if (!hex || !p->entry) {
            tdsx_free(hex);
            return TDSX_E_NOMEM;
        }
        memcpy(hex, v.p, v.n);
        hex[v.n] = '\0';
        int rc = tdsx_hex_decode(p->entry, p->entry_len, hex);
        tdsx_free(hex);
        if (rc)
            return TDSX_E_FORMAT;
    }
    for (;;) {
        if (next_line(&in, &line) != 0)
            return TDSX_E_FORMAT;
        if (line.n == 10 && memcmp(line.p, "checkpoint", 10) == 0)
            break;
        if (!keyed(line, "hash", &v) || p->nhashes == TDSX_MERKLE_CONSISTENCY_MAX ||
            hex_value(v, p->hashes[p->nhashes].b, TDSX_HASH_LEN) != 0)
            return TDSX_E_FORMAT;
        p->nhashes++;
    }
    p->note = in;
    return 0;
}

/* Opens a checkpoint note: signed by vkey when one is given, else only parsed. */
static int open_checkpoint(tdsx_bytes_t note, const tdsx_note_verifier_t *v, tdsx_note_t **n,
                           tdsx_checkpoint_t *cp)
{
    if (v)
        return tdsx_checkpoint_open(note, v, NULL, 0, v->name, n, cp);
    int rc = tdsx_note_parse(note, n);
    return rc ? rc : tdsx_checkpoint_parse(tdsx_note_text(*n), cp);
}

static void check(const char *what, int ok, const char *detail)
{
    printf("%-5s %s%s%s\n", ok ? "PASS" : "FAIL", what, detail ? ": " : "", detail ? detail : "");
}

int tdsx_cmd_log_verify_proof(int argc, char **argv)
{
    static const struct option opts[] = {{"vkey", required_argument, NULL, 'k'},
                                         {"old-checkpoint", required_argument, NULL, 'O'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *cmd = argv[0], *vkey = NULL, *old = NULL;
    int o;
    optind = 1;
    while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (o) {
        case 'k': vkey = optarg; break;
        case 'O': old = optarg; break;
        case 'h':
            printf(
                "usage: tdsx log verify-proof FILE [--vkey VKEY] [--old-checkpoint FILE]\n"
                "Checks a proof file from `tdsx log proof` or `tdsx log consistency` offline:\n"
                "the Merkle proof against the checkpoint in it (RFC 9162), the checkpoint's\n"
                "signature with VKEY (the log's verifier key from `tdsx log status`; without it\n"
                "the signature is not checked and the result says so), and for a consistency\n"
                "proof that it starts at --old-checkpoint (a checkpoint you held before, e.g. "
                "from\n"
                "`tdsx log status --cosigned-out`). One line per check.\n"
                "Exit 0 every check passed, 1 one failed, 2 could not run.\n");
            return TDSX_EXIT_OK;
        default: return tdsx_cli_usage(cmd, "unknown option");
        }
    }
    if (optind + 1 != argc)
        return tdsx_cli_usage(cmd, "name one proof file");
    const char *file = argv[optind];
    tdsx_note_verifier_t v;
    if (vkey && tdsx_note_verifier_parse(tdsx_bytes(vkey, strlen(vkey)), &v) != 0)
        return tdsx_cli_usage(cmd, "--vkey: not a note verifier key");
    uint8_t *text = NULL, *old_text = NULL;
    size_t len = 0, old_len = 0;
    int rc = tdsx_file_read(file, PROOF_FILE_CAP, &text, &len);
    if (rc)
        return tdsx_cli_fail(cmd, rc, file);
    if (old && (rc = tdsx_file_read(old, TDSX_NOTE_MAX, &old_text, &old_len)) != 0) {
        tdsx_free(text);
        return tdsx_cli_fail(cmd, rc, old);
    }
    proof_t p;
    memset(&p, 0, sizeof p);
    tdsx_note_t *note = NULL, *old_note = NULL;
    tdsx_checkpoint_t cp, ocp;
    int failed = 0;
    char detail[600];
    rc = parse_proof(tdsx_bytes(text, len), &p);
    if (rc) {
        check("proof file", 0, tdsx_strerror(rc));
        failed = 1;
        goto done;
    }
    rc = open_checkpoint(p.note, vkey ? &v : NULL, &note, &cp);
    if (rc) {
        snprintf(detail, sizeof detail, "%s (%s)", tdsx_strerror(rc), tdsx_err_name(rc));
        check("checkpoint", 0, detail);
        failed = 1;
        goto done;
    }
    snprintf(detail, sizeof detail, "%.*s, size %" PRIu64 "%s", (int)cp.origin.n,
             (const char *)cp.origin.p, cp.size,
             vkey ? ", signed by the log's key" : " (signature NOT checked: no --vkey)");
    check("checkpoint", 1, detail);
    if (p.consistency) {
        rc = tdsx_merkle_consistency_verify(p.num, cp.size, &p.from_root, &cp.root, p.hashes,
                                            p.nhashes);
        snprintf(detail, sizeof detail,
                 "the first %" PRIu64 " entries are a prefix of the %" PRIu64, p.num, cp.size);
        check("consistency", rc == 0, detail);
        failed |= rc != 0;
        if (old) {
            rc = open_checkpoint(tdsx_bytes(old_text, old_len), vkey ? &v : NULL, &old_note, &ocp);
            int same = rc == 0 && ocp.size == p.num &&
                       memcmp(ocp.root.b, p.from_root.b, TDSX_HASH_LEN) == 0 &&
                       tdsx_bytes_equal(ocp.origin, cp.origin);
            snprintf(detail, sizeof detail, "%s",
                     rc     ? tdsx_strerror(rc)
                     : same ? "the proof starts at the checkpoint held before"
                            : "the proof starts elsewhere than the checkpoint held before");
            check("old checkpoint", same, detail);
            failed |= !same;
        }
    } else {
        tdsx_hash_t leaf;
        rc = tdsx_merkle_leaf_hash(p.entry, p.entry_len, &leaf);
        if (rc == 0)
            rc = tdsx_merkle_inclusion_verify(p.num, cp.size, &leaf, p.hashes, p.nhashes, &cp.root);
        char what[512];
        tdsx__log_entry_describe(tdsx_bytes(p.entry, p.entry_len), what, sizeof what);
        snprintf(detail, sizeof detail, "entry %" PRIu64 " of %" PRIu64 ": %s", p.num, cp.size,
                 what);
        check("inclusion", rc == 0, detail);
        failed |= rc != 0;
    }
done:
    tdsx_note_free(note);
    tdsx_note_free(old_note);
    tdsx_free(p.entry);
    tdsx_free(text);
    tdsx_free(old_text);
    return failed ? TDSX_EXIT_INVALID : TDSX_EXIT_OK;
}
