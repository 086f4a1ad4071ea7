/* tdsx agree propose | accept | refuse | terminate | list — agreements (SPEC §7) as an operator
 * drives them. The daemon signs and talks to the peer; this only builds requests and prints. */
#include "cli.h"
#include "daemon.h"

#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define AGREE_TIMEOUT_MS 30000 /* the daemon waits up to 10 s for the peer, then answers */
#define AGREE_ACTIONS_MAX 6
#define DAY_SECONDS 86400

/* An Error answer: could not run (bad arguments, peer not there) versus refused. */
static int agree_error_exit(int rc)
{
    return rc == TDSX_E_INVAL || rc == TDSX_E_NOTFOUND || rc == TDSX_E_AGAIN || rc == TDSX_E_TIMEOUT
               ? TDSX_EXIT_ERROR
               : TDSX_EXIT_INVALID;
}

static int call(const tdsx_cli_target_t *t, Tdsx__LocalRequest *req, tdsx_arena_t **arena,
                Tdsx__LocalResponse **resp)
{
    return tdsx__cli_ask(t, req, AGREE_TIMEOUT_MS, TDSX__LOCAL_RESPONSE__BODY_AGREE,
                         agree_error_exit, arena, resp);
}

static void hex_print(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        printf("%02x", p[i]);
}

static void date(char out[24], int64_t t)
{
    time_t tt = (time_t)t;
    struct tm tm;
    if (t <= 0 || !gmtime_r(&tt, &tm) || strftime(out, 24, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        snprintf(out, 24, "-");
}

static void print_summary(const Tdsx__AgreementSummary *s)
{
    char from[24], to[24];
    printf("agreement  ");
    hex_print(s->agreement_id.data, s->agreement_id.len);
    printf("\nhash       ");
    hex_print(s->agreement_hash.data, s->agreement_hash.len);
    printf("\nstate      %s\n", s->state);
    printf("with       %s (we are the %s; proposed by %s)\n", s->counterpart, s->our_role,
           s->proposer);
    if (*s->dataset_id)
        printf("subject    dataset %s\n", s->dataset_id);
    else
        printf("subject    category %s\n", s->category);
    printf("purpose    %s%s%s%s\n", s->purpose_code, *s->purpose_text ? " (" : "", s->purpose_text,
           *s->purpose_text ? ")" : "");
    printf("actions    ");
    for (size_t i = 0; i < s->n_actions; i++)
        printf("%s%s", i ? "," : "", s->actions[i]);
    date(from, s->not_before);
    date(to, s->not_after);
    printf("\nvalid      %s .. %s\n", from, to);
    if (s->transfer_limit)
        printf("transfers  %llu/%llu\n", (unsigned long long)s->transfers_used,
               (unsigned long long)s->transfer_limit);
    else
        printf("transfers  %llu (no limit)\n", (unsigned long long)s->transfers_used);
    if (*s->reason)
        printf("reason     %s\n", s->reason);
}

static int print_answer(const Tdsx__AgreeResponse *r)
{
    for (size_t i = 0; i < r->n_agreements; i++)
        print_summary(r->agreements[i]);
    if (*r->note)
        printf("note       %s\n", r->note);
    return TDSX_EXIT_OK;
}

int tdsx_cmd_agree_propose(int argc, char **argv)
{
    static const struct option opts[] = {{"with", required_argument, NULL, 'w'},
                                         {"dataset", required_argument, NULL, 'd'},
                                         {"category", required_argument, NULL, 'g'},
                                         {"purpose", required_argument, NULL, 'p'},
                                         {"purpose-text", required_argument, NULL, 'P'},
                                         {"action", required_argument, NULL, 'a'},
                                         {"days", required_argument, NULL, 'D'},
                                         {"not-before", required_argument, NULL, 'b'},
                                         {"not-after", required_argument, NULL, 'A'},
                                         {"limit", required_argument, NULL, 'l'},
                                         {"as", required_argument, NULL, 'r'},
                                         TDSX_CLI_SOCKET_OPTIONS,
                                         {NULL, 0, NULL, 0}};
    tdsx_cli_target_t t = {argv[0], NULL, NULL};
    Tdsx__AgreeProposeRequest p = TDSX__AGREE_PROPOSE_REQUEST__INIT;
    char *actions[AGREE_ACTIONS_MAX];
    uint64_t days = 0, not_after = 0, not_before = 0, limit = 0;
    int have_days = 0, have_after = 0;
    int o;
    optind = 1;
    while ((o = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
        if (tdsx__cli_take_socket_opt(o, &t))
            continue;
        switch (o) {
        case 'w': p.with = optarg; break;
        case 'd': p.dataset_id = optarg; break;
        case 'g': p.category = optarg; break;
        case 'p': p.purpose_code = optarg; break;
        case 'P': p.purpose_text = optarg; break;
        case 'a':
            if (p.n_actions == AGREE_ACTIONS_MAX)
                return tdsx_cli_usage(t.cmd, "at most %d --action", AGREE_ACTIONS_MAX);
            actions[p.n_actions++] = optarg;
            break;
        case 'D':
            if (tdsx__cli_u64(optarg, 0, 36500, &days) != 0 || days == 0)
                return tdsx_cli_usage(t.cmd, "--days takes 1..36500");
            have_days = 1;
            break;
        case 'b':
            if (tdsx__cli_u64(optarg, 0, INT64_MAX, &not_before) != 0)
                return tdsx_cli_usage(t.cmd, "--not-before takes seconds since the epoch");
            break;
        case 'A':
            if (tdsx__cli_u64(optarg, 0, INT64_MAX, &not_after) != 0)
                return tdsx_cli_usage(t.cmd, "--not-after takes seconds since the epoch");
            have_after = 1;
            break;
        case 'l':
            if (tdsx__cli_u64(optarg, 0, INT64_MAX, &limit) != 0)
                return tdsx_cli_usage(t.cmd, "--limit takes a number of transfers");
            break;
        case 'r':
            if (strcmp(optarg, "consumer") == 0)
                p.as_consumer = 1;
            else if (strcmp(optarg, "provider") != 0)
                return tdsx_cli_usage(t.cmd, "--as takes provider or consumer");
            break;
        case 'h':
            printf(
                "usage: tdsx agree propose --with NODE (--dataset ID | --category PATH)\n"
                "                 --purpose CODE [--purpose-text TEXT] --action A [--action A]...\n"
                "                 (--days N | --not-after UNIX) [--not-before UNIX] [--limit N]\n"
                "                 [--as provider|consumer] [--socket PATH | -c CONFIG]\n"
                "Proposes an agreement (企业数据授权) to NODE, which must be connected: this node\n"
                "signs the terms and NODE stores them as a proposal it may accept or refuse.\n"
                "We are the data provider unless --as consumer. Actions: receive, derive,\n"
                "relay-to:<centre|brain|enterprise>, relay-to:<USCC>/<node>. The agreement is\n"
                "valid once both parties signed, from --not-before (default now) to the end of\n"
                "--days or --not-after; --limit caps the number of transfers under it.\n"
                "Exit 0 proposed, 1 refused by NODE or by this node, 2 could not run.\n");
            return TDSX_EXIT_OK;
        default: return tdsx_cli_usage(t.cmd, "unknown option");
        }
    }
    if (optind != argc)
        return tdsx_cli_usage(t.cmd, "unexpected argument '%s'", argv[optind]);
    if (!*p.with)
        return tdsx_cli_usage(t.cmd, "--with NODE is required");
    if (!*p.dataset_id == !*p.category)
        return tdsx_cli_usage(t.cmd, "give one of --dataset ID and --category PATH");
    if (!*p.purpose_code)
        return tdsx_cli_usage(t.cmd, "--purpose CODE is required");
    if (p.n_actions == 0)
        return tdsx_cli_usage(t.cmd, "at least one --action is required (e.g. receive)");
    if (have_days == have_after)
        return tdsx_cli_usage(t.cmd, "give one of --days N and --not-after UNIX");
    int64_t start = not_before ? (int64_t)not_before : tdsx_now();
    p.not_before = (int64_t)not_before;
    p.not_after = have_days ? start + (int64_t)days * DAY_SECONDS - 1 : (int64_t)not_after;
    p.transfer_limit = limit;
    p.actions = actions;
    Tdsx__LocalRequest req = TDSX__LOCAL_REQUEST__INIT;
    req.body_case = TDSX__LOCAL_REQUEST__BODY_AGREE_PROPOSE;
    req.agree_propose = &p;
    tdsx_arena_t *arena = NULL;
    Tdsx__LocalResponse *resp = NULL;
    int code = call(&t, &req, &arena, &resp);
    if (code == 0)
        code = print_answer(resp->agree);
    tdsx_arena_free(arena);
    return code;
}

/* accept | refuse | terminate ID [--reason TEXT] */
static int answer_cmd(int argc, char **argv, int body, int reason_allowed, const char *help)
{
    static const struct option opts[] = {
        {"reason", required_argument, NULL, 'R'}, TDSX_CLI_SOCKET_OPTIONS, {NULL, 0, NULL, 0}};
    tdsx_cli_target_t t = {argv[0], NULL, NULL};
    const char *reason = "";
    int o;
    optind = 1;
    while ((o = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
        if (tdsx__cli_take_socket_opt(o, &t))
            continue;
        if (o == 'R' && reason_allowed) {
            reason = optarg;
            continue;
        }
        if (o == 'h') {
            fputs(help, stdout);
            return TDSX_EXIT_OK;
        }
        return tdsx_cli_usage(t.cmd, "unknown option");
    }
    if (argc - optind != 1)
        return tdsx_cli_usage(t.cmd, "one agreement ID is required");
    uint8_t id[16];
    if (strlen(argv[optind]) != 32 || tdsx_hex_decode(id, sizeof id, argv[optind]) != 0)
        return tdsx_cli_usage(t.cmd, "an agreement ID is 32 hex digits (tdsx agree list)");
    Tdsx__AgreeAnswerRequest a = TDSX__AGREE_ANSWER_REQUEST__INIT;
    a.agreement_id.data = id;
    a.agreement_id.len = sizeof id;
    a.reason = (char *)reason;
    Tdsx__LocalRequest req = TDSX__LOCAL_REQUEST__INIT;
    req.body_case = (Tdsx__LocalRequest__BodyCase)body;
    switch (body) {
    case TDSX__LOCAL_REQUEST__BODY_AGREE_ACCEPT: req.agree_accept = &a; break;
    case TDSX__LOCAL_REQUEST__BODY_AGREE_REFUSE: req.agree_refuse = &a; break;
    default: req.agree_terminate = &a; break;
    }
    tdsx_arena_t *arena = NULL;
    Tdsx__LocalResponse *resp = NULL;
    int code = call(&t, &req, &arena, &resp);
    if (code == 0)
        code = print_answer(resp->agree);
    tdsx_arena_free(arena);
    return code;
}

int tdsx_cmd_agree_accept(int argc, char **argv)
{
    return answer_cmd(argc, argv, TDSX__LOCAL_REQUEST__BODY_AGREE_ACCEPT, 0,
                      "usage: tdsx agree accept ID [--socket PATH | -c CONFIG]\n"
                      "Accepts the other party's proposal ID: this node signs the identical\n"
                      "terms and the proposer verifies them. The agreement is then active.\n"
                      "Exit 0 accepted, 1 refused (not an open proposal to us, expired,\n"
                      "the proposer said no), 2 could not run (proposer not connected).\n");
}

int tdsx_cmd_agree_refuse(int argc, char **argv)
{
    return answer_cmd(argc, argv, TDSX__LOCAL_REQUEST__BODY_AGREE_REFUSE, 1,
                      "usage: tdsx agree refuse ID [--reason TEXT] [--socket PATH | -c CONFIG]\n"
                      "Refuses the other party's proposal ID and tells it so.\n"
                      "Exit 0 refused, 1 not an open proposal to us, 2 could not run.\n");
}

int tdsx_cmd_agree_terminate(int argc, char **argv)
{
    return answer_cmd(argc, argv, TDSX__LOCAL_REQUEST__BODY_AGREE_TERMINATE, 1,
                      "usage: tdsx agree terminate ID [--reason TEXT] [--socket PATH | -c CONFIG]\n"
                      "Ends agreement ID (or withdraws a proposal) with a signed termination.\n"
                      "Either party may; transfers running under it abort at both ends.\n"
                      "Exit 0 terminated, 1 already refused or terminated, 2 could not run.\n");
}

int tdsx_cmd_agree_list(int argc, char **argv)
{
    static const struct option opts[] = {{"page", required_argument, NULL, 'p'},
                                         {"limit", required_argument, NULL, 'l'},
                                         TDSX_CLI_SOCKET_OPTIONS,
                                         {NULL, 0, NULL, 0}};
    tdsx_cli_target_t t = {argv[0], NULL, NULL};
    Tdsx__AgreeListRequest l = TDSX__AGREE_LIST_REQUEST__INIT;
    uint64_t limit = 50;
    int o;
    optind = 1;
    while ((o = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
        if (tdsx__cli_take_socket_opt(o, &t))
            continue;
        switch (o) {
        case 'p': l.page_token = optarg; break;
        case 'l':
            if (tdsx__cli_u64(optarg, 0, 200, &limit) != 0 || limit == 0)
                return tdsx_cli_usage(t.cmd, "--limit takes 1..200");
            break;
        case 'h':
            printf("usage: tdsx agree list [--page TOKEN] [--limit N] [--socket PATH | -c CONFIG]\n"
                   "Lists the agreements this node holds, newest first, one per line: id,\n"
                   "state (proposed-by-us, proposed-to-us, active, not-yet-valid, refused,\n"
                   "terminated, expired), our role, counterpart, subject, purpose, last valid\n"
                   "second, and transfers used/limit.\n");
            return TDSX_EXIT_OK;
        default: return tdsx_cli_usage(t.cmd, "unknown option");
        }
    }
    if (optind != argc)
        return tdsx_cli_usage(t.cmd, "unexpected argument '%s'", argv[optind]);
    l.page_size = (uint32_t)limit;
    Tdsx__LocalRequest req = TDSX__LOCAL_REQUEST__INIT;
    req.body_case = TDSX__LOCAL_REQUEST__BODY_AGREE_LIST;
    req.agree_list = &l;
    tdsx_arena_t *arena = NULL;
    Tdsx__LocalResponse *resp = NULL;
    int code = call(&t, &req, &arena, &resp);
    if (code == 0) {
        const Tdsx__AgreeResponse *r = resp->agree;
        printf("%-32s  %-14s  %-8s  %-40s  %-32s  %-12s  %-20s  %s\n", "ID", "STATE", "ROLE",
               "COUNTERPART", "SUBJECT", "PURPOSE", "NOT-AFTER", "USED");
        for (size_t i = 0; i < r->n_agreements; i++) {
            const Tdsx__AgreementSummary *s = r->agreements[i];
            char subject[300], until[24], used[48];
            snprintf(subject, sizeof subject, "%s:%s", *s->dataset_id ? "dataset" : "category",
                     *s->dataset_id ? s->dataset_id : s->category);
            date(until, s->not_after);
            if (s->transfer_limit)
                snprintf(used, sizeof used, "%llu/%llu", (unsigned long long)s->transfers_used,
                         (unsigned long long)s->transfer_limit);
            else
                snprintf(used, sizeof used, "%llu/-", (unsigned long long)s->transfers_used);
            hex_print(s->agreement_id.data, s->agreement_id.len);
            printf("  %-14s  %-8s  %-40s  %-32s  %-12s  %-20s  %s\n", s->state, s->our_role,
                   s->counterpart, subject, s->purpose_code, until, used);
        }
        if (*r->next_page_token)
            printf("next page: --page %s\n", r->next_page_token);
    }
    tdsx_arena_free(arena);
    return code;
}
