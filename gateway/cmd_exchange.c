/* tdsx send | pull | catalog | receipts — the exchange as an operator drives it. */
#include "cli.h"
#include "daemon.h"

#include <getopt.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define EXCHANGE_TIMEOUT_MS (10 * 60 * 1000) /* silence from the daemon before giving up */
#define LOCAL_TIMEOUT_MS 30000

/* Sends req to the daemon and waits for the final answer; progress goes to cb. On success
 * *resp is in *arena (the caller frees the arena). Daemon-side errors become their codes. */
static int call(const tdsx_cli_target_t *t, Tdsx__LocalRequest *req, int timeout_ms,
                tdsx_control_progress_cb cb, void *ud, tdsx_arena_t **arena,
                Tdsx__LocalResponse **resp, int *exit_code)
{
    char *path = NULL;
    int rc = tdsx__cli_socket(t->cmd, t->sock, t->conf, &path);
    if (rc) {
        *exit_code = rc;
        return -1;
    }
    req->id = 1;
    rc = tdsx_arena_new(TDSX_ENVELOPE_ARENA_BUDGET_CLI, arena);
    if (rc == 0)
        rc = tdsx_control_call(path, req, *arena, timeout_ms, cb, ud, resp);
    if (rc == 0 && (*resp)->body_case == TDSX__LOCAL_RESPONSE__BODY_ERROR) {
        rc = tdsx_err_from_wire((*resp)->error->code);
        fprintf(stderr, "tdsx %s: %s (%s)\n", t->cmd, (*resp)->error->message, tdsx_err_name(rc));
        *exit_code = rc == TDSX_E_NOTFOUND || rc == TDSX_E_AGAIN || rc == TDSX_E_INVAL ||
                             rc == TDSX_E_DRAINING
                         ? TDSX_EXIT_ERROR
                         : TDSX_EXIT_INVALID;
        tdsx_free(path);
        return -1;
    }
    if (rc) {
        *exit_code = tdsx_cli_fail(t->cmd, rc, path);
        if (rc == TDSX_E_NOTFOUND || rc == TDSX_E_TIMEOUT || rc == TDSX_E_CLOSED)
            *exit_code = TDSX_EXIT_ERROR;
        tdsx_free(path);
        return -1;
    }
    tdsx_free(path);
    return 0;
}

static void hex_print(FILE *f, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        fprintf(f, "%02x", p[i]);
}

static int parse_tid(const char *s, uint8_t out[16])
{
    return tdsx_hex_decode(out, 16, s);
}

/* Progress on a terminal: bytes, rate, ETA. Nothing when stderr is not a terminal. */
typedef struct {
    struct timespec start;
    int shown;
} progress_t;

static double human(double v, const char **unit)
{
    static const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int i = 0;
    while (v >= 1024 && i < 4) {
        v /= 1024;
        i++;
    }
    *unit = units[i];
    return v;
}

static void on_progress(void *ud, const Tdsx__LocalResponse *r)
{
    progress_t *p = ud;
    const Tdsx__TransferProgress *tp = r->progress;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    double secs = (double)(now.tv_sec - p->start.tv_sec) + (now.tv_nsec - p->start.tv_nsec) / 1e9;
    double rate = secs > 0 ? (double)tp->done / secs : 0;
    const char *u1, *u2, *u3;
    double done = human((double)tp->done, &u1), total = human((double)tp->total, &u2),
           rt = human(rate, &u3);
    double eta = rate > 0 ? (double)(tp->total - tp->done) / rate : 0;
    fprintf(stderr, "\r  %7.1f %s / %.1f %s  %7.1f %s/s  ETA %4.0fs ", done, u1, total, u2, rt, u3,
            eta);
    p->shown = 1;
}

static int show_result(const char *cmd, const Tdsx__TransferResult *r, const char *receipt_out)
{
    int err = r->error ? tdsx_err_from_wire(r->error) : 0;
    printf("transfer   ");
    hex_print(stdout, r->transfer_id.data, r->transfer_id.len);
    printf("\nstate      %s\n", r->state);
    if (r->sha256.len == 32) {
        printf("sha256     ");
        hex_print(stdout, r->sha256.data, 32);
        printf("\n");
    }
    printf("length     %llu\n", (unsigned long long)r->length);
    if (r->sealed) {
        /* SPEC §9: the hash and length above are the ciphertext's. */
        printf("sealed     yes\n");
        if (r->plaintext_sha256.len == 32) {
            printf("plaintext  ");
            hex_print(stdout, r->plaintext_sha256.data, 32);
            printf("\n");
        }
    }
    if (*r->object_path)
        printf("object     %s\n", r->object_path);
    if (r->receipt.len && receipt_out) {
        int rc = tdsx_file_write(receipt_out, r->receipt.data, r->receipt.len, 0600, 1);
        if (rc)
            return tdsx_cli_fail(cmd, rc, receipt_out);
        printf("receipt    %s\n", receipt_out);
    }
    if (err) {
        fprintf(stderr, "tdsx %s: %s: %s (%s)\n", cmd, r->state,
                *r->message ? r->message : tdsx_strerror(err), tdsx_err_name(err));
        if (strcmp(r->state, "interrupted") == 0) {
            fprintf(stderr, "tdsx %s: resume with --resume ", cmd);
            hex_print(stderr, r->transfer_id.data, r->transfer_id.len);
            fprintf(stderr, "\n");
        }
        return TDSX_EXIT_INVALID;
    }
    return TDSX_EXIT_OK;
}

static int run_transfer(const tdsx_cli_target_t *t, Tdsx__LocalRequest *req,
                        const char *receipt_out)
{
    progress_t p;
    memset(&p, 0, sizeof p);
    clock_gettime(CLOCK_MONOTONIC, &p.start);
    int tty = isatty(2);
    if (req->body_case == TDSX__LOCAL_REQUEST__BODY_SEND)
        req->send->progress = tty;
    else
        req->pull->progress = tty;
    tdsx_arena_t *arena = NULL;
    Tdsx__LocalResponse *resp = NULL;
    int code = 0;
    int rc = call(t, req, EXCHANGE_TIMEOUT_MS, tty ? on_progress : NULL, &p, &arena, &resp, &code);
    if (p.shown)
        fprintf(stderr, "\n");
    if (rc == 0) {
        code = resp->body_case == TDSX__LOCAL_RESPONSE__BODY_RESULT
                   ? show_result(t->cmd, resp->result, receipt_out)
                   : tdsx_cli_fail(t->cmd, TDSX_E_PROTOCOL, "daemon answer");
    }
    tdsx_arena_free(arena);
    return code;
}

/* ---- send / pull ---------------------------------------------------------------------------- */

int tdsx_cmd_send(int argc, char **argv)
{
    static const struct option opts[] = {{"to", required_argument, NULL, 't'},
                                         {"dataset", required_argument, NULL, 'd'},
                                         {"tags", required_argument, NULL, 'g'},
                                         {"resume", required_argument, NULL, 'r'},
                                         {"receipt-out", required_argument, NULL, 'o'},
                                         {"seal", no_argument, NULL, 's'},
                                         {"final", required_argument, NULL, 'F'},
                                         {"relay", required_argument, NULL, 'R'},
                                         TDSX_CLI_SOCKET_OPTIONS,
                                         {NULL, 0, NULL, 0}};
    tdsx_cli_target_t t = {argv[0], NULL, NULL};
    const char *to = NULL, *dataset = "", *tags = "", *resume = NULL, *receipt_out = NULL;
    const char *final = "", *relay = NULL;
    int seal = 0;
    int o;
    optind = 1;
    while ((o = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
        if (tdsx__cli_take_socket_opt(o, &t))
            continue;
        switch (o) {
        case 't': to = optarg; break;
        case 'd': dataset = optarg; break;
        case 'g': tags = optarg; break;
        case 'r': resume = optarg; break;
        case 'o': receipt_out = optarg; break;
        case 's': seal = 1; break;
        case 'F': final = optarg; break;
        case 'R': relay = optarg; break;
        case 'h':
            printf("usage: tdsx send --to NODE [FILE] [--dataset ID] [--tags TAGS]\n"
                   "                 [--seal [--final NODE]] [--resume TRANSFER_ID]\n"
                   "                 [--receipt-out FILE] [--socket PATH | -c CONFIG]\n"
                   "       tdsx send --to NODE --relay TRANSFER_ID [--receipt-out FILE] ...\n"
                   "Pushes FILE (or, without FILE, the catalog dataset ID) to NODE\n"
                   "(\"<USCC>/<node>\", connected to this daemon). Ends when both halves of the\n"
                   "receipt are held; prints the transfer id, hash and state, and with\n"
                   "--receipt-out writes the complete receipt (ReceiptBundle) for auditors.\n"
                   "Progress (rate, ETA) shows on a terminal. An interrupted send is resumed with\n"
                   "--resume and the same FILE.\n"
                   "--seal encrypts the payload for the final recipient (NODE given by --final,\n"
                   "default the receiver) with its enc key from the registry: relays forward it\n"
                   "unread, the final recipient opens it and keeps the plaintext object.\n"
                   "--relay forwards the stored payload of transfer TRANSFER_ID this node\n"
                   "received, as it came (sealed or not), naming the upstream receipt.\n"
                   "Exit 0 receipted, 1 refused/aborted/interrupted, 2 could not run.\n");
            return TDSX_EXIT_OK;
        default: return tdsx_cli_usage(t.cmd, "unknown option");
        }
    }
    if (!to)
        return tdsx_cli_usage(t.cmd, "--to NODE is required");
    if (argc - optind > 1)
        return tdsx_cli_usage(t.cmd, "one FILE at most");
    const char *file = optind < argc ? argv[optind] : NULL;
    if (relay && (file || *dataset || *tags || seal || *final || resume))
        return tdsx_cli_usage(t.cmd, "--relay takes no FILE, --dataset, --tags, --seal, --final "
                                     "or --resume: the payload goes on as it came");
    if (*final && !seal)
        return tdsx_cli_usage(t.cmd, "--final NODE needs --seal");
    if (!relay && !file && !*dataset)
        return tdsx_cli_usage(t.cmd, "give a FILE or --dataset ID");
    char abs[PATH_MAX] = "";
    if (file && !realpath(file, abs))
        return tdsx_cli_fail(t.cmd, TDSX_E_NOTFOUND, file);
    uint8_t tid[16];
    Tdsx__LocalRequest req = TDSX__LOCAL_REQUEST__INIT;
    Tdsx__SendRequest s = TDSX__SEND_REQUEST__INIT;
    s.to = (char *)to;
    s.path = abs;
    s.dataset_id = (char *)dataset;
    s.tags = (char *)tags;
    s.seal = seal;
    s.final_recipient = (char *) final;
    uint8_t up[16];
    if (relay) {
        if (parse_tid(relay, up) != 0)
            return tdsx_cli_usage(t.cmd, "--relay takes a 32-hex-digit transfer id");
        s.relay.data = up;
        s.relay.len = 16;
    }
    if (resume) {
        if (parse_tid(resume, tid) != 0)
            return tdsx_cli_usage(t.cmd, "--resume takes a 32-hex-digit transfer id");
        s.resume.data = tid;
        s.resume.len = 16;
    }
    req.body_case = TDSX__LOCAL_REQUEST__BODY_SEND;
    req.send = &s;
    return run_transfer(&t, &req, receipt_out);
}

int tdsx_cmd_pull(int argc, char **argv)
{
    static const struct option opts[] = {{"from", required_argument, NULL, 'f'},
                                         {"receipt-out", required_argument, NULL, 'o'},
                                         TDSX_CLI_SOCKET_OPTIONS,
                                         {NULL, 0, NULL, 0}};
    tdsx_cli_target_t t = {argv[0], NULL, NULL};
    const char *from = NULL, *receipt_out = NULL;
    int o;
    optind = 1;
    while ((o = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
        if (tdsx__cli_take_socket_opt(o, &t))
            continue;
        switch (o) {
        case 'f': from = optarg; break;
        case 'o': receipt_out = optarg; break;
        case 'h':
            printf("usage: tdsx pull --from NODE DATASET [--receipt-out FILE]\n"
                   "                 [--socket PATH | -c CONFIG]\n"
                   "Asks NODE for its catalog dataset DATASET; the payload is stored in this\n"
                   "node's object store (its path is printed) once its length and SHA-256 match\n"
                   "the owner's signed NRO, and both halves of the receipt are held.\n"
                   "Exit 0 receipted, 1 refused/aborted, 2 could not run.\n");
            return TDSX_EXIT_OK;
        default: return tdsx_cli_usage(t.cmd, "unknown option");
        }
    }
    if (!from || argc - optind != 1)
        return tdsx_cli_usage(t.cmd, "--from NODE and one DATASET are required");
    Tdsx__LocalRequest req = TDSX__LOCAL_REQUEST__INIT;
    Tdsx__PullRequest p = TDSX__PULL_REQUEST__INIT;
    p.from = (char *)from;
    p.dataset_id = argv[optind];
    req.body_case = TDSX__LOCAL_REQUEST__BODY_PULL;
    req.pull = &p;
    return run_transfer(&t, &req, receipt_out);
}

/* ---- catalog ----------------------------------------------------------------------------------
 */

static void print_dataset(const Tdsx__DatasetDescriptor *d)
{
    printf("%-24s %-40s %12llu  ", d->id, d->owner, (unsigned long long)d->size);
    hex_print(stdout, d->sha256.data, d->sha256.len < 8 ? d->sha256.len : 8);
    printf("  %s\n", d->title);
}

int tdsx_cmd_catalog_publish(int argc, char **argv)
{
    static const struct option opts[] = {{"id", required_argument, NULL, 'i'},
                                         {"title", required_argument, NULL, 'T'},
                                         {"description", required_argument, NULL, 'D'},
                                         {"tags", required_argument, NULL, 'g'},
                                         {"media-type", required_argument, NULL, 'm'},
                                         TDSX_CLI_SOCKET_OPTIONS,
                                         {NULL, 0, NULL, 0}};
    tdsx_cli_target_t t = {argv[0], NULL, NULL};
    const char *id = NULL, *title = "", *desc = "", *tags = NULL, *media = "";
    int o;
    optind = 1;
    while ((o = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
        if (tdsx__cli_take_socket_opt(o, &t))
            continue;
        switch (o) {
        case 'i': id = optarg; break;
        case 'T': title = optarg; break;
        case 'D': desc = optarg; break;
        case 'g': tags = optarg; break;
        case 'm': media = optarg; break;
        case 'h':
            printf(
                "usage: tdsx catalog publish FILE --id ID --tags TAGS [--title T]\n"
                "                 [--description D] [--media-type M] [--socket PATH | -c CONFIG]\n"
                "Registers FILE as dataset ID in this node's catalog (数据登记/上架): the bytes "
                "are\n"
                "copied into the object store and hashed; TAGS is the classification, e.g.\n"
                "\"grade=general:2 domain=production category=production.process\n"
                " personal=none library=base source=enterprise\".\n"
                "Exit 0 published, 1 refused (bad tags), 2 could not run.\n");
            return TDSX_EXIT_OK;
        default: return tdsx_cli_usage(t.cmd, "unknown option");
        }
    }
    if (!id || !tags || argc - optind != 1)
        return tdsx_cli_usage(t.cmd, "FILE, --id and --tags are required");
    char abs[PATH_MAX];
    if (!realpath(argv[optind], abs))
        return tdsx_cli_fail(t.cmd, TDSX_E_NOTFOUND, argv[optind]);
    Tdsx__LocalRequest req = TDSX__LOCAL_REQUEST__INIT;
    Tdsx__PublishRequest p = TDSX__PUBLISH_REQUEST__INIT;
    p.path = abs;
    p.dataset_id = (char *)id;
    p.title = (char *)title;
    p.description = (char *)desc;
    p.tags = (char *)tags;
    p.media_type = (char *)media;
    req.body_case = TDSX__LOCAL_REQUEST__BODY_PUBLISH;
    req.publish = &p;
    tdsx_arena_t *arena = NULL;
    Tdsx__LocalResponse *resp = NULL;
    int code = 0;
    if (call(&t, &req, LOCAL_TIMEOUT_MS * 10, NULL, NULL, &arena, &resp, &code) == 0) {
        if (resp->body_case == TDSX__LOCAL_RESPONSE__BODY_DATASET) {
            printf("published  %s\n", resp->dataset->id);
            printf("owner      %s\n", resp->dataset->owner);
            printf("size       %llu\n", (unsigned long long)resp->dataset->size);
            printf("sha256     ");
            hex_print(stdout, resp->dataset->sha256.data, resp->dataset->sha256.len);
            printf("\n");
        } else {
            code = tdsx_cli_fail(t.cmd, TDSX_E_PROTOCOL, "daemon answer");
        }
    }
    tdsx_arena_free(arena);
    return code;
}

int tdsx_cmd_catalog_list(int argc, char **argv)
{
    static const struct option opts[] = {{"from", required_argument, NULL, 'f'},
                                         {"text", required_argument, NULL, 'x'},
                                         {"page", required_argument, NULL, 'p'},
                                         {"limit", required_argument, NULL, 'l'},
                                         TDSX_CLI_SOCKET_OPTIONS,
                                         {NULL, 0, NULL, 0}};
    tdsx_cli_target_t t = {argv[0], NULL, NULL};
    const char *from = "", *text = "", *page = "";
    unsigned long limit = 50;
    int o;
    optind = 1;
    while ((o = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
        if (tdsx__cli_take_socket_opt(o, &t))
            continue;
        switch (o) {
        case 'f': from = optarg; break;
        case 'x': text = optarg; break;
        case 'p': page = optarg; break;
        case 'l': {
            char *end;
            limit = strtoul(optarg, &end, 10);
            if (*end || limit == 0 || limit > 100)
                return tdsx_cli_usage(t.cmd, "--limit takes 1..100");
            break;
        }
        case 'h':
            printf("usage: tdsx catalog list [--from NODE] [--text T] [--page TOKEN] [--limit N]\n"
                   "                 [--socket PATH | -c CONFIG]\n"
                   "Lists this node's catalog, or NODE's when --from is given. Prints one dataset\n"
                   "per line (id, owner, size, hash prefix, title) and the next page token.\n");
            return TDSX_EXIT_OK;
        default: return tdsx_cli_usage(t.cmd, "unknown option");
        }
    }
    if (optind != argc)
        return tdsx_cli_usage(t.cmd, "unexpected argument '%s'", argv[optind]);
    Tdsx__LocalRequest req = TDSX__LOCAL_REQUEST__INIT;
    Tdsx__CatalogListRequest l = TDSX__CATALOG_LIST_REQUEST__INIT;
    l.from = (char *)from;
    l.text = (char *)text;
    l.page_token = (char *)page;
    l.page_size = (uint32_t)limit;
    req.body_case = TDSX__LOCAL_REQUEST__BODY_CATALOG_LIST;
    req.catalog_list = &l;
    tdsx_arena_t *arena = NULL;
    Tdsx__LocalResponse *resp = NULL;
    int code = 0;
    if (call(&t, &req, LOCAL_TIMEOUT_MS, NULL, NULL, &arena, &resp, &code) == 0) {
        if (resp->body_case == TDSX__LOCAL_RESPONSE__BODY_CATALOG) {
            for (size_t i = 0; i < resp->catalog->n_datasets; i++)
                print_dataset(resp->catalog->datasets[i]);
            if (*resp->catalog->next_page_token)
                printf("next page: --page %s\n", resp->catalog->next_page_token);
        } else {
            code = tdsx_cli_fail(t.cmd, TDSX_E_PROTOCOL, "daemon answer");
        }
    }
    tdsx_arena_free(arena);
    return code;
}

int tdsx_cmd_catalog_withdraw(int argc, char **argv)
{
    static const struct option opts[] = {TDSX_CLI_SOCKET_OPTIONS, {NULL, 0, NULL, 0}};
    tdsx_cli_target_t t = {argv[0], NULL, NULL};
    int o;
    optind = 1;
    while ((o = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
        if (tdsx__cli_take_socket_opt(o, &t))
            continue;
        if (o == 'h') {
            printf("usage: tdsx catalog withdraw ID [--socket PATH | -c CONFIG]\n"
                   "Withdraws dataset ID from this node's catalog: peers can no longer pull it.\n");
            return TDSX_EXIT_OK;
        }
        return tdsx_cli_usage(t.cmd, "unknown option");
    }
    if (argc - optind != 1)
        return tdsx_cli_usage(t.cmd, "one dataset ID is required");
    Tdsx__LocalRequest req = TDSX__LOCAL_REQUEST__INIT;
    Tdsx__WithdrawRequest w = TDSX__WITHDRAW_REQUEST__INIT;
    w.dataset_id = argv[optind];
    req.body_case = TDSX__LOCAL_REQUEST__BODY_WITHDRAW;
    req.withdraw = &w;
    tdsx_arena_t *arena = NULL;
    Tdsx__LocalResponse *resp = NULL;
    int code = 0;
    if (call(&t, &req, LOCAL_TIMEOUT_MS, NULL, NULL, &arena, &resp, &code) == 0)
        printf("withdrawn  %s\n", argv[optind]);
    tdsx_arena_free(arena);
    return code;
}

/* ---- receipts ------------------------------------------------------------------------------- */

int tdsx_cmd_receipts_list(int argc, char **argv)
{
    static const struct option opts[] = {
        {"page", required_argument, NULL, 'p'}, TDSX_CLI_SOCKET_OPTIONS, {NULL, 0, NULL, 0}};
    tdsx_cli_target_t t = {argv[0], NULL, NULL};
    const char *page = "";
    int o;
    optind = 1;
    while ((o = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
        if (tdsx__cli_take_socket_opt(o, &t))
            continue;
        if (o == 'p') {
            page = optarg;
            continue;
        }
        if (o == 'h') {
            printf("usage: tdsx receipts list [--page TOKEN] [--socket PATH | -c CONFIG]\n"
                   "Lists the complete receipts this node holds, newest first.\n");
            return TDSX_EXIT_OK;
        }
        return tdsx_cli_usage(t.cmd, "unknown option");
    }
    Tdsx__LocalRequest req = TDSX__LOCAL_REQUEST__INIT;
    Tdsx__ReceiptsRequest r = TDSX__RECEIPTS_REQUEST__INIT;
    r.page_token = (char *)page;
    req.body_case = TDSX__LOCAL_REQUEST__BODY_RECEIPTS;
    req.receipts = &r;
    tdsx_arena_t *arena = NULL;
    Tdsx__LocalResponse *resp = NULL;
    int code = 0;
    if (call(&t, &req, LOCAL_TIMEOUT_MS, NULL, NULL, &arena, &resp, &code) == 0) {
        const Tdsx__ReceiptsResponse *rr = resp->receipts;
        for (size_t i = 0; rr && i < rr->n_receipts; i++) {
            hex_print(stdout, rr->receipts[i]->transfer_id.data, rr->receipts[i]->transfer_id.len);
            printf("  %s -> %s\n", rr->receipts[i]->sender, rr->receipts[i]->receiver);
        }
        if (rr && *rr->next_page_token)
            printf("next page: --page %s\n", rr->next_page_token);
    }
    tdsx_arena_free(arena);
    return code;
}

/* Fetches one receipt bundle from the daemon into a heap buffer. */
static int fetch_receipt(const tdsx_cli_target_t *t, const char *tid_hex, uint8_t **out,
                         size_t *len)
{
    uint8_t tid[16];
    if (parse_tid(tid_hex, tid) != 0)
        return tdsx_cli_usage(t->cmd, "a transfer id is 32 hex digits");
    Tdsx__LocalRequest req = TDSX__LOCAL_REQUEST__INIT;
    Tdsx__ReceiptsRequest r = TDSX__RECEIPTS_REQUEST__INIT;
    r.transfer_id.data = tid;
    r.transfer_id.len = 16;
    req.body_case = TDSX__LOCAL_REQUEST__BODY_RECEIPTS;
    req.receipts = &r;
    tdsx_arena_t *arena = NULL;
    Tdsx__LocalResponse *resp = NULL;
    int code = 0;
    if (call(t, &req, LOCAL_TIMEOUT_MS, NULL, NULL, &arena, &resp, &code) == 0) {
        const ProtobufCBinaryData *b = &resp->receipts->receipt;
        *out = tdsx_malloc(b->len ? b->len : 1);
        if (!*out) {
            code = tdsx_cli_fail(t->cmd, TDSX_E_NOMEM, NULL);
        } else {
            memcpy(*out, b->data, b->len);
            *len = b->len;
        }
    }
    tdsx_arena_free(arena);
    return code;
}

static void print_receipt(const tdsx_receipt_info_t *i)
{
    printf("transfer   ");
    hex_print(stdout, i->transfer_id, 16);
    printf("\nsender     %s\nreceiver   %s\ndataset    %s\n", i->sender, i->receiver,
           i->dataset_id);
    printf("length     %llu\nsha256     ", (unsigned long long)i->length);
    hex_print(stdout, i->sha256, 32);
    printf("\nsequence   %llu\nstatus     %s\n", (unsigned long long)i->sequence, i->status);
    tdsx__cli_print_time(11, "sent", i->sent_at);
    tdsx__cli_print_time(11, "received", i->received_at);
}

/* Verifies a receipt bundle against the anchor file and prints it (VALID / INVALID line
 * first when `verdict`). Returns the exit code. */
static int check_receipt(const char *cmd, tdsx_bytes_t bundle, const char *anchor, int verdict)
{
    tdsx_trust_t *trust = NULL;
    int rc = tdsx_trust_new(&trust);
    if (rc == 0)
        rc = tdsx_trust_add_anchors_file(trust, anchor);
    if (rc) {
        tdsx_trust_free(trust);
        return tdsx_cli_fail(cmd, rc == TDSX_E_CERT_PARSE ? TDSX_E_NOTFOUND : rc, anchor);
    }
    tdsx_receipt_info_t info;
    const char *what = NULL;
    rc = tdsx_receipt_verify(bundle, trust, &info, &what);
    tdsx_trust_free(trust);
    if (rc) {
        if (verdict)
            printf("INVALID %s %s\n", what, tdsx_err_name(rc));
        fprintf(stderr, "tdsx %s: receipt does not verify: %s: %s (%s)\n", cmd, what,
                tdsx_strerror(rc), tdsx_err_name(rc));
        return TDSX_EXIT_INVALID;
    }
    if (verdict)
        printf("VALID\n");
    print_receipt(&info);
    return TDSX_EXIT_OK;
}

int tdsx_cmd_receipts_show(int argc, char **argv)
{
    static const struct option opts[] = {{"out", required_argument, NULL, 'o'},
                                         {"anchor", required_argument, NULL, 'a'},
                                         TDSX_CLI_SOCKET_OPTIONS,
                                         {NULL, 0, NULL, 0}};
    tdsx_cli_target_t t = {argv[0], NULL, NULL};
    const char *out = NULL, *anchor = NULL;
    int o;
    optind = 1;
    while ((o = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
        if (tdsx__cli_take_socket_opt(o, &t))
            continue;
        switch (o) {
        case 'o': out = optarg; break;
        case 'a': anchor = optarg; break;
        case 'h':
            printf("usage: tdsx receipts show TRANSFER_ID --anchor ROOT.pem [--out FILE]\n"
                   "                 [--socket PATH | -c CONFIG]\n"
                   "Fetches the complete receipt from the daemon, verifies it against ROOT.pem\n"
                   "and prints it; --out writes the ReceiptBundle (for tdsx receipts verify).\n");
            return TDSX_EXIT_OK;
        default: return tdsx_cli_usage(t.cmd, "unknown option");
        }
    }
    if (argc - optind != 1 || !anchor)
        return tdsx_cli_usage(t.cmd, "one TRANSFER_ID and --anchor are required");
    uint8_t *b = NULL;
    size_t len = 0;
    int code = fetch_receipt(&t, argv[optind], &b, &len);
    if (code)
        return code;
    if (out) {
        int rc = tdsx_file_write(out, b, len, 0600, 1);
        if (rc) {
            tdsx_free(b);
            return tdsx_cli_fail(t.cmd, rc, out);
        }
    }
    code = check_receipt(t.cmd, tdsx_bytes(b, len), anchor, 0);
    tdsx_free(b);
    return code;
}

int tdsx_cmd_receipts_verify(int argc, char **argv)
{
    static const struct option opts[] = {{"anchor", required_argument, NULL, 'a'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *cmd = argv[0], *anchor = NULL;
    int o;
    optind = 1;
    while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (o) {
        case 'a': anchor = optarg; break;
        case 'h':
            printf("usage: tdsx receipts verify FILE --anchor ROOT.pem\n"
                   "Verifies a receipt (ReceiptBundle, as written by --receipt-out or receipts\n"
                   "show --out) offline, trusting only ROOT.pem: both certificate chains, both\n"
                   "signatures, and that the NRR acknowledges exactly this NRO.\n"
                   "Exit 0 valid (prints it), 1 invalid (prints the part and code), 2 could not "
                   "run.\n");
            return TDSX_EXIT_OK;
        default: return tdsx_cli_usage(cmd, "unknown option");
        }
    }
    if (argc - optind != 1 || !anchor)
        return tdsx_cli_usage(cmd, "FILE and --anchor are required");
    uint8_t *b = NULL;
    size_t len = 0;
    int rc = tdsx_file_read(argv[optind], 16u << 20, &b, &len);
    if (rc)
        return tdsx_cli_fail(cmd, rc, argv[optind]);
    int code = check_receipt(cmd, tdsx_bytes(b, len), anchor, 1);
    tdsx_free(b);
    return code;
}
