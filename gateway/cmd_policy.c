/* tdsx policy check | explain — lint a policy file, and show how it decides one transfer.
 * Offline: they read only the files they are given. */
#include "certs.h"
#include "cli.h"
#include "policy.h"

#include <getopt.h>
#include <string.h>

/* The policy module keeps its own role enum so it need not depend on certs/; the values must
 * stay the same for the cast in the daemon to be right. */
_Static_assert((int)TDSX_POLICY_ROLE_CENTRE == (int)TDSX_ROLE_CENTRE &&
                   (int)TDSX_POLICY_ROLE_BRAIN == (int)TDSX_ROLE_BRAIN &&
                   (int)TDSX_POLICY_ROLE_ENTERPRISE == (int)TDSX_ROLE_ENTERPRISE,
               "policy and certs role values differ");

static int bad_option(const char *cmd, int c, char **argv)
{
    if (c == ':')
        return tdsx_cli_usage(cmd, "option '%s' needs a value", argv[optind - 1]);
    return tdsx_cli_usage(cmd, "unknown option '%s'", argv[optind - 1]);
}

static void start_options(void)
{
    optind = 1;
    opterr = 0;
}

static void print_diags(FILE *f, const char *file, const tdsx_diags_t *d)
{
    for (size_t i = 0; i < d->n; i++) {
        const tdsx_diag_t *e = &d->v[i];
        fprintf(f, "%s:%u:%u: %s: %s\n", file, e->line, e->col,
                e->severity == TDSX_DIAG_ERROR ? "error" : "warning", e->msg);
    }
    if (d->dropped)
        fprintf(f, "%s: %zu more not shown\n", file, d->dropped);
}

/* The taxonomy named on the command line, or the built-in default. Problems in the file are
 * printed; the command cannot run without a taxonomy, so they are exit status 2. */
static int load_taxonomy(const char *cmd, const char *path, tdsx_taxonomy_t **out)
{
    if (!path) {
        int rc = tdsx_taxonomy_new_default(out);
        return rc ? tdsx_cli_fail(cmd, rc, "built-in taxonomy"), TDSX_EXIT_ERROR : 0;
    }
    tdsx_diags_t d;
    tdsx_diags_init(&d);
    int rc = tdsx_taxonomy_load(path, out, &d);
    if (rc == TDSX_E_TAXONOMY)
        print_diags(stderr, path, &d);
    tdsx_diags_free(&d);
    if (rc) {
        tdsx_cli_fail(cmd, rc, path);
        return TDSX_EXIT_ERROR;
    }
    return 0;
}

/* ------------------------------------------------------------------------------------------
 * tdsx policy check
 * ---------------------------------------------------------------------------------------- */
static void check_usage(FILE *f)
{
    fputs("usage: tdsx policy check FILE [--taxonomy FILE] [--normalised]\n"
          "\n"
          "Lints a policy file and prints one line per finding, FILE:LINE:COL: error|warning:\n"
          "  errors    syntax, unknown words and bad values — every one, not only the first\n"
          "  warnings  a rule an earlier rule shadows (unreachable); conditions that contradict\n"
          "            each other; an allow the hard floors make impossible (allow grade core)\n"
          "            or narrower than it reads (important data without require agreement,\n"
          "            seal; personal information without require purpose; no grade at all);\n"
          "            a category not in the taxonomy\n"
          "\n"
          "  --taxonomy FILE   category taxonomy to check against (default: the built-in MIIT\n"
          "                    工业数据分类分级指南 categories)\n"
          "  --normalised      also print the normalised policy whose SHA-256 reports carry\n"
          "\n"
          "Exit status: 0 clean (prints the policy hash), 1 problems found, 2 could not run.\n",
          f);
}

int tdsx_cmd_policy_check(int argc, char **argv)
{
    static const struct option longopts[] = {{"taxonomy", required_argument, NULL, 't'},
                                             {"normalised", no_argument, NULL, 'n'},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
    const char *cmd = argv[0];
    const char *tax_path = NULL;
    int normalised = 0;
    if (tdsx_cli_wants_help(argc, argv)) {
        check_usage(stdout);
        return TDSX_EXIT_OK;
    }
    start_options();
    int c;
    while ((c = getopt_long(argc, argv, ":", longopts, NULL)) != -1) {
        switch (c) {
        case 't': tax_path = optarg; break;
        case 'n': normalised = 1; break;
        default: return bad_option(cmd, c, argv);
        }
    }
    if (argc - optind != 1)
        return tdsx_cli_usage(cmd, "exactly one policy FILE is needed");
    const char *file = argv[optind];

    tdsx_taxonomy_t *tax = NULL;
    tdsx_policy_t *p = NULL;
    tdsx_diags_t d;
    tdsx_diags_init(&d);
    int status = load_taxonomy(cmd, tax_path, &tax);
    if (status)
        goto done;
    int rc = tdsx_policy_load(file, &p, &d);
    if (rc == 0)
        rc = tdsx_policy_lint(p, tax, &d) < 0 ? TDSX_E_NOMEM : 0;
    if (rc && rc != TDSX_E_POLICY_PARSE) {
        status = tdsx_cli_fail(cmd, rc, file);
        goto done;
    }
    print_diags(stdout, file, &d);
    size_t errors = tdsx_diags_count(&d, TDSX_DIAG_ERROR);
    size_t warnings = tdsx_diags_count(&d, TDSX_DIAG_WARNING);
    if (rc || d.n) {
        printf("%s: %zu error%s, %zu warning%s\n", file, errors, errors == 1 ? "" : "s", warnings,
               warnings == 1 ? "" : "s");
        status = TDSX_EXIT_INVALID;
    } else {
        char hex[65];
        tdsx_policy_hash_hex(p, hex);
        size_t n = tdsx_policy_rule_count(p);
        printf("%s: ok, %zu rule%s, policy sha256:%s\n", file, n, n == 1 ? "" : "s", hex);
        status = TDSX_EXIT_OK;
    }
    if (normalised && p)
        fputs(tdsx_policy_canonical(p, NULL), stdout);
done:
    tdsx_diags_free(&d);
    tdsx_policy_free(p);
    tdsx_taxonomy_free(tax);
    return status;
}

/* ------------------------------------------------------------------------------------------
 * tdsx policy explain
 * ---------------------------------------------------------------------------------------- */
static void explain_usage(FILE *f)
{
    fputs("usage: tdsx policy explain FILE --direction send|receive --peer-role ROLE\n"
          "                           --tags \"TAGS\" [--peer ID] [--local-role ROLE]\n"
          "                           [--agreement none|valid[:PURPOSE]|expired|terminated]\n"
          "                           [--sealed] [--relay] [--taxonomy FILE]\n"
          "\n"
          "Decides one transfer as the node would, and prints the decision, the rule id that\n"
          "goes into the receipt, the file rule that matched (and its line), any hard floor\n"
          "that refused, and what the transfer requires.\n"
          "\n"
          "  --direction D       send (we are the sender) or receive\n"
          "  --peer-role ROLE    the counterpart's role: centre, brain or enterprise\n"
          "  --peer ID           the counterpart's node id <USCC>/<node-name>\n"
          "  --local-role ROLE   our own role (default: none, so `local` conditions fail)\n"
          "  --tags \"TAGS\"       e.g. \"grade=general:3 domain=production\n"
          "                      category=production.process.quality personal=none\n"
          "                      library=base source=enterprise\"\n"
          "  --agreement A       none (default), valid, valid:PURPOSE-CODE, expired, terminated\n"
          "  --sealed            the payload is sealed for the final recipient\n"
          "  --relay             the transfer relays data received from upstream\n"
          "  --taxonomy FILE     taxonomy the tags must fit (default: built-in)\n"
          "\n"
          "Exit status: 0 allowed, 1 refused, 2 could not run (usage, bad tags, bad policy).\n",
          f);
}

static int parse_agreement(const char *s, tdsx_agreement_state_t *state, const char **purpose)
{
    *purpose = NULL;
    if (strcmp(s, "none") == 0)
        *state = TDSX_AGREEMENT_NONE;
    else if (strcmp(s, "valid") == 0)
        *state = TDSX_AGREEMENT_VALID;
    else if (strncmp(s, "valid:", 6) == 0 && s[6]) {
        *state = TDSX_AGREEMENT_VALID;
        *purpose = s + 6;
    } else if (strcmp(s, "expired") == 0)
        *state = TDSX_AGREEMENT_EXPIRED;
    else if (strcmp(s, "terminated") == 0)
        *state = TDSX_AGREEMENT_TERMINATED;
    else
        return -1;
    return 0;
}

static void print_reqs(const char *label, unsigned req)
{
    printf("%s", label);
    if (!req)
        printf(" none");
    const char *sep = " ";
    if (req & TDSX_POLICY_REQ_AGREEMENT) {
        printf("%sagreement", sep);
        sep = ", ";
    }
    if (req & TDSX_POLICY_REQ_PURPOSE) {
        printf("%spurpose", sep);
        sep = ", ";
    }
    if (req & TDSX_POLICY_REQ_SEAL)
        printf("%sseal", sep);
    printf("\n");
}

/* Whether the input meets one floor, for the explanation. */
static int floor_met(unsigned floor, const tdsx_policy_input_t *in)
{
    int agreement = in->agreement == TDSX_AGREEMENT_VALID;
    switch (floor) {
    case TDSX_FLOOR_IMPORTANT_AGREEMENT: return agreement;
    case TDSX_FLOOR_IMPORTANT_SEAL: return in->sealed;
    case TDSX_FLOOR_PERSONAL_PURPOSE: return agreement && in->purpose && in->purpose[0];
    case TDSX_FLOOR_CORE_STAYS_HOME:
    default: return 0;
    }
}

static void print_decision(const tdsx_policy_t *p, const tdsx_policy_input_t *in,
                           const tdsx_policy_decision_t *d)
{
    printf("decision: %s\n", d->allow ? "allow" : "deny");
    if (d->line)
        printf("rule:     %s (line %u)\n", d->rule_id, d->line);
    else
        printf("rule:     %s\n", d->rule_id);
    if (d->matched_id) {
        char text[1024] = "";
        for (size_t i = 0; i < tdsx_policy_rule_count(p); i++)
            if (tdsx_policy_rule_line(p, i) == d->matched_line &&
                tdsx_policy_rule_text(p, i, text, sizeof text) != 0)
                snprintf(text, sizeof text, "(too long to show)");
        printf("matched:  %s (line %u): %s\n", d->matched_id, d->matched_line, text);
    } else {
        printf("matched:  none: no rule matches, so the default is to refuse\n");
    }
    if (d->floor)
        printf("floor:    %s refused what the file allowed\n", tdsx_floor_id(d->floor));
    if (d->allow)
        printf("reason:   %s\n", d->reason);
    else
        printf("reason:   %s (%s)\n", d->reason, tdsx_err_name(d->code));
    if (d->matched_id && d->required) {
        print_reqs("requires:", d->required);
        print_reqs("missing: ", d->missing);
    }
    if (d->floors) {
        printf("floors:  ");
        const char *sep = " ";
        for (unsigned f = 1; f <= TDSX_FLOOR_PERSONAL_PURPOSE; f <<= 1) {
            if (!(d->floors & f))
                continue;
            printf("%s%s (%s)", sep, tdsx_floor_id(f), floor_met(f, in) ? "met" : "not met");
            sep = ", ";
        }
        printf("\n");
    }
    char hex[65];
    tdsx_policy_hash_hex(p, hex);
    printf("policy:   sha256:%s\n", hex);
}

int tdsx_cmd_policy_explain(int argc, char **argv)
{
    static const struct option longopts[] = {{"direction", required_argument, NULL, 'd'},
                                             {"peer-role", required_argument, NULL, 'r'},
                                             {"peer", required_argument, NULL, 'p'},
                                             {"local-role", required_argument, NULL, 'l'},
                                             {"tags", required_argument, NULL, 'T'},
                                             {"agreement", required_argument, NULL, 'a'},
                                             {"sealed", no_argument, NULL, 's'},
                                             {"relay", no_argument, NULL, 'R'},
                                             {"taxonomy", required_argument, NULL, 't'},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
    const char *cmd = argv[0];
    const char *tags_text = NULL, *tax_path = NULL;
    tdsx_policy_input_t in;
    memset(&in, 0, sizeof in);
    if (tdsx_cli_wants_help(argc, argv)) {
        explain_usage(stdout);
        return TDSX_EXIT_OK;
    }
    start_options();
    int c;
    while ((c = getopt_long(argc, argv, ":", longopts, NULL)) != -1) {
        switch (c) {
        case 'd':
            if (strcmp(optarg, "send") == 0)
                in.direction = TDSX_DIR_SEND;
            else if (strcmp(optarg, "receive") == 0)
                in.direction = TDSX_DIR_RECEIVE;
            else
                return tdsx_cli_usage(cmd, "--direction is send or receive, not '%s'", optarg);
            break;
        case 'r':
            if (tdsx_policy_role_parse(optarg, &in.peer_role) != 0)
                return tdsx_cli_usage(cmd, "--peer-role is centre, brain or enterprise, not '%s'",
                                      optarg);
            break;
        case 'l':
            if (tdsx_policy_role_parse(optarg, &in.local_role) != 0)
                return tdsx_cli_usage(cmd, "--local-role is centre, brain or enterprise, not '%s'",
                                      optarg);
            break;
        case 'p': in.peer_id = optarg; break;
        case 'T': tags_text = optarg; break;
        case 'a':
            if (parse_agreement(optarg, &in.agreement, &in.purpose) != 0)
                return tdsx_cli_usage(cmd,
                                      "--agreement is none, valid, valid:PURPOSE, expired or "
                                      "terminated, not '%s'",
                                      optarg);
            break;
        case 's': in.sealed = 1; break;
        case 'R': in.relay = 1; break;
        case 't': tax_path = optarg; break;
        default: return bad_option(cmd, c, argv);
        }
    }
    if (argc - optind != 1)
        return tdsx_cli_usage(cmd, "exactly one policy FILE is needed");
    if (!in.direction || !in.peer_role || !tags_text)
        return tdsx_cli_usage(cmd, "--direction, --peer-role and --tags are required");
    const char *file = argv[optind];

    tdsx_tags_t tags;
    tdsx_tags_error_t te;
    if (tdsx_tags_parse(tdsx_bytes(tags_text, strlen(tags_text)), &tags, &te) != 0) {
        fprintf(stderr, "tdsx %s: --tags: %s (%s)\n", cmd, te.msg, tdsx_err_name(TDSX_E_TAGS));
        return TDSX_EXIT_ERROR;
    }
    in.tags = &tags;

    tdsx_taxonomy_t *tax = NULL;
    tdsx_policy_t *p = NULL;
    tdsx_diags_t d;
    tdsx_diags_init(&d);
    int status = load_taxonomy(cmd, tax_path, &tax);
    if (status)
        goto done;
    if (tdsx_taxonomy_check(tax, &tags) != 0) {
        fprintf(stderr, "tdsx %s: --tags: category '%s' is not in the taxonomy (%s)\n", cmd,
                tags.category, tdsx_err_name(TDSX_E_TAGS));
        status = TDSX_EXIT_ERROR;
        goto done;
    }
    int rc = tdsx_policy_load(file, &p, &d);
    if (rc) {
        print_diags(stderr, file, &d);
        tdsx_cli_fail(cmd, rc, file);
        status = TDSX_EXIT_ERROR;
        goto done;
    }
    tdsx_policy_decision_t dec;
    rc = tdsx_policy_eval(p, &in, &dec);
    print_decision(p, &in, &dec);
    status = rc == 0 ? TDSX_EXIT_OK : TDSX_EXIT_INVALID;
done:
    tdsx_diags_free(&d);
    tdsx_policy_free(p);
    tdsx_taxonomy_free(tax);
    return status;
}
