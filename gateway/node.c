/*
 * node.c — the tdsxd node: loads its identity, trust and registry, listens, keeps its
 * configured peers dialled (with backoff), handles signals and drains on SIGTERM (SPEC §15).
 */
#include "daemon.h"
#include "bundle.h"
#include "exchange.h"
#include "http.h"
#include "log.h"
#include "report.h"
#include "policy.h"

#include <string.h>

#include <sodium.h>

struct tdsx_dialer_s {
    tdsx_node_t *node;
    char id[TDSX_ID_SIZE];
    char host[TDSX_HOST_MAX + 1];
    int port;
    uv_timer_t timer;
    uv_getaddrinfo_t gai;
    int resolving;
    tdsx_conn_t *conn;
    uint64_t backoff_ms;
    int last_err;
    int closed;
};

const char *tdsx__dialer_id(const tdsx_dialer_t *d)
{
    return d->id;
}

/* The policy a node runs when its config names none: SPEC §8's example for what it sends,
 * and for what it receives the same grades with the same requirements. The hard floors hold
 * whatever this says. */
static const char default_policy[] =
    "# tdsxd built-in default policy (SPEC 8)\n"
    "[no-core]                deny  grade core\n"
    "[important-to-centre]    allow grade important to centre        require agreement, seal\n"
    "[general-3-4-up]         allow grade general>=3 to brain,centre require agreement\n"
    "[general-1-2-base-up]    allow grade general<=2 library base to brain,centre\n"
    "[receive-important]      allow grade important from any         require agreement, seal\n"
    "[receive-general-3-4]    allow grade general>=3 from any        require agreement\n"
    "[receive-general-1-2]    allow grade general<=2 from any\n"
    "[default]                deny  any\n";

int tdsx__node_load_policy(tdsx_node_t *n, tdsx_policy_t **out)
{
    tdsx_diags_t d;
    tdsx_diags_init(&d);
    int rc =
        n->cfg.policy
            ? tdsx_policy_load(n->cfg.policy, out, &d)
            : tdsx_policy_parse(tdsx_bytes(default_policy, sizeof default_policy - 1), out, &d);
    for (size_t i = 0; rc && i < d.n && i < 20; i++)
        tdsx_log(TDSX_LOG_ERROR, "policy.invalid",
                 TDSX_KV_S("file", n->cfg.policy ? n->cfg.policy : "(built-in)"),
                 TDSX_KV_I("line", d.v[i].line), TDSX_KV_I("column", d.v[i].col),
                 TDSX_KV_S("problem", d.v[i].msg));
    tdsx_diags_free(&d);
    return rc;
}

/* ---- loading ---------------------------------------------------------------------------- */

static int path_join(const char *dir, const char *name, tdsx_buf_t *b)
{
    tdsx_buf_init(b, 8192);
    return tdsx_buf_printf(b, "%s/%s", dir, name);
}

static void set_what(char *what, size_t size, const char *s)
{
    if (what && size)
        snprintf(what, size, "%s", s);
}

static int load_own_cert(tdsx_node_t *n, const char *file, tdsx_purpose_t purpose,
                         tdsx_identity_t *id, char *what, size_t what_size)
{
    tdsx_buf_t p;
    STACK_OF(X509) *sk = NULL;
    int rc = path_join(n->cfg.credentials, file, &p);
    if (rc == 0)
        rc = tdsx_cert_load_file((const char *)p.p, &sk);
    if (rc == 0) {
        tdsx_verify_opts_t o = {purpose, n->cfg.role, 0, 0};
        rc = tdsx_cert_verify(n->trust, sk_X509_value(sk, 0), sk, &o, id);
    }
    if (rc)
        set_what(what, what_size, file);
    sk_X509_pop_free(sk, X509_free);
    tdsx_buf_free(&p);
    return rc;
}

int tdsx_node_new(uv_loop_t *loop, tdsx_config_t *cfg, tdsx_node_t **out, char *what,
                  size_t what_size)
{
    tdsx_node_t *n = tdsx_calloc(1, sizeof *n);
    tdsx_buf_t p;
    int rc;
    *out = NULL;
    if (!n)
        return TDSX_E_NOMEM;
    n->loop = loop;
    n->cfg = *cfg;
    memset(cfg, 0, sizeof *cfg);
    n->started_at = tdsx_now();
    tdsx_buf_init(&p, 8192);

    if ((rc = tdsx_trust_new(&n->trust)) != 0)
        goto fail;
    if ((rc = path_join(n->cfg.credentials, TDSX_CRED_ROOT, &p)) != 0)
        goto fail;
    if ((rc = tdsx_trust_add_anchors_file(n->trust, (const char *)p.p)) != 0) {
        set_what(what, what_size, TDSX_CRED_ROOT);
        goto fail;
    }
    tdsx_buf_free(&p);
    /* chain.pem may be absent or empty when nodes are issued by the root itself. */
    if ((rc = path_join(n->cfg.credentials, TDSX_CRED_CHAIN, &p)) != 0)
        goto fail;
    uint8_t *chain = NULL;
    size_t chain_len = 0;
    if (tdsx_file_read((const char *)p.p, 1 << 20, &chain, &chain_len) == 0 && chain_len > 0 &&
        strstr((const char *)chain, "-----BEGIN CERTIFICATE-----"))
        rc = tdsx_trust_add_intermediates_pem(n->trust, chain, chain_len);
    tdsx_free(chain);
    if (rc) {
        set_what(what, what_size, TDSX_CRED_CHAIN);
        goto fail;
    }
    for (size_t i = 0; i < n->cfg.n_crls; i++) {
        if ((rc = tdsx_trust_add_crls_file(n->trust, n->cfg.crls[i])) != 0) {
            set_what(what, what_size, n->cfg.crls[i]);
            goto fail;
        }
    }
    /* A trust bundle (bundle.c) brings the registry and more CRLs; else the registry file. */
    if ((rc = tdsx__bundle_load(n, what, what_size)) != 0)
        goto fail;
    tdsx_registry_error_t rerr;
    /* Only bundle_url and no bundle yet (a node's first start): no member until the first
     * download brings the registry (fetch.c); until then every peer is refused. */
    if (!n->registry && !n->cfg.registry && n->cfg.n_bundle_urls > 0 &&
        (rc = tdsx_registry_parse(tdsx_bytes("", 0), &n->registry, &rerr)) != 0)
        goto fail;
    if (!n->registry && (rc = tdsx_registry_load(n->cfg.registry, &n->registry, &rerr)) != 0) {
        set_what(what, what_size, n->cfg.registry);
        tdsx_log(TDSX_LOG_ERROR, "registry.invalid", TDSX_KV_S("file", n->cfg.registry),
                 TDSX_KV_I("line", rerr.line), TDSX_KV_S("problem", rerr.msg));
        goto fail;
    }
    /* The witness that cosigns our log (log.c) must be a member we can reach: in the registry
     * file, or, for a node whose members come from fetched bundles, in one still to come (its
     * dialer waits for it: tdsx__node_witness_dial). */
    if (n->cfg.witness && !tdsx_registry_find(n->registry, n->cfg.witness) &&
        !tdsx__node_witness_may_wait(n)) {
        set_what(what, what_size, "witness (not in the member registry)");
        rc = TDSX_E_NOTFOUND;
        goto fail;
    }
    if ((rc = load_own_cert(n, TDSX_CRED_AUTH_CERT, TDSX_PURPOSE_AUTH, &n->self_auth, what,
                            what_size)) != 0)
        goto fail;
    if ((rc = load_own_cert(n, TDSX_CRED_SIGN_CERT, TDSX_PURPOSE_SIGN, &n->self_sign, what,
                            what_size)) != 0)
        goto fail;
    tdsx_identity_id(&n->self_auth, n->self_id, sizeof n->self_id);
    tdsx_tls_config_t tc = {n->cfg.credentials, NULL, NULL, n->trust, n->registry};
    if ((rc = tdsx_tls_ctx_new(&tc, &n->tls)) != 0) {
        set_what(what, what_size, "tls");
        goto fail;
    }
    if ((rc = tdsx__exchange_new(n, what, what_size)) != 0)
        goto fail;
    if ((rc = tdsx__node_load_policy(n, &n->policy)) != 0) {
        set_what(what, what_size, n->cfg.policy ? n->cfg.policy : "built-in policy");
        goto fail;
    }
    tdsx_diags_t td;
    tdsx_diags_init(&td);
    rc = n->cfg.taxonomy ? tdsx_taxonomy_load(n->cfg.taxonomy, &n->taxonomy, &td)
                         : tdsx_taxonomy_new_default(&n->taxonomy);
    tdsx_diags_free(&td);
    if (rc) {
        set_what(what, what_size, n->cfg.taxonomy ? n->cfg.taxonomy : "built-in taxonomy");
        goto fail;
    }
    tdsx_buf_free(&p);
    *out = n;
    return 0;
fail:
    tdsx_buf_free(&p);
    tdsx_node_free(n);
    return rc;
}

/* ---- dialers ------------------------------------------------------------------------------ */

static void dial(tdsx_dialer_t *d);

static void on_redial(uv_timer_t *t)
{
    dial(t->data);
}

static void schedule_redial(tdsx_dialer_t *d, int err)
{
    tdsx_node_t *n = d->node;
    if (n->draining || d->closed)
        return;
    d->last_err = err;
    if (d->backoff_ms == 0)
        d->backoff_ms = n->cfg.redial_min_ms;
    else if (d->backoff_ms < n->cfg.redial_max_ms / 2)
        d->backoff_ms *= 2;
    else
        d->backoff_ms = n->cfg.redial_max_ms;
    /* Jitter of up to a quarter keeps nodes that lost one peer from redialling in lockstep. */
    uint64_t delay =
        d->backoff_ms - d->backoff_ms / 4 + randombytes_uniform((uint32_t)(d->backoff_ms / 2 + 1));
    tdsx_log(TDSX_LOG_INFO, "dial.backoff", TDSX_KV_S("peer", d->id),
             TDSX_KV_E("err", err ? err : TDSX_E_CLOSED), TDSX_KV_I("retry_ms", delay));
    uv_timer_start(&d->timer, on_redial, delay, 0);
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    tdsx_dialer_t *d = req->data;
    d->resolving = 0;
    if (d->closed || d->node->draining) {
        uv_freeaddrinfo(res);
        return;
    }
    int rc = status < 0 || !res ? TDSX_E_IO : tdsx__conn_dial(d->node, d, res->ai_addr);
    uv_freeaddrinfo(res);
    if (rc)
        schedule_redial(d, rc);
}

static void dial(tdsx_dialer_t *d)
{
    if (d->conn || d->resolving || d->closed || d->node->draining)
        return;
    struct sockaddr_storage ss;
    if (uv_ip4_addr(d->host, d->port, (struct sockaddr_in *)&ss) == 0 ||
        uv_ip6_addr(d->host, d->port, (struct sockaddr_in6 *)&ss) == 0) {
        int rc = tdsx__conn_dial(d->node, d, (struct sockaddr *)&ss);
        if (rc)
            schedule_redial(d, rc);
        return;
    }
    char port[8];
    snprintf(port, sizeof port, "%d", d->port);
    struct addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_socktype = SOCK_STREAM;
    d->gai.data = d;
    if (uv_getaddrinfo(d->node->loop, &d->gai, on_resolved, d->host, port, &hints) == 0)
        d->resolving = 1;
    else
        schedule_redial(d, TDSX_E_IO);
}

void tdsx__dialer_opened(tdsx_dialer_t *d, tdsx_conn_t *c)
{
    d->conn = c;
    d->backoff_ms = 0;
    d->last_err = 0;
}

void tdsx__dialer_closed(tdsx_dialer_t *d, int err)
{
    d->conn = NULL;
    schedule_redial(d, err);
}

int tdsx__node_witness_may_wait(const tdsx_node_t *n)
{
    return n->cfg.n_bundle_urls > 0 || n->cfg.bundle_file != NULL;
}

/* Whether the witness (log.c, SPEC §11) needs a dialer of its own: named, not us, not a
 * configured peer. */
static int witness_needs_dialer(const tdsx_node_t *n)
{
    if (!n->cfg.witness || strcmp(n->cfg.witness, n->self_id) == 0)
        return 0;
    for (size_t i = 0; i < n->cfg.n_peers; i++)
        if (strcmp(n->cfg.peers[i].id, n->cfg.witness) == 0)
            return 0;
    return 1;
}

/* Fills dialer d for the witness member w (at its registry endpoint) and starts its timer. */
static int witness_dialer_init(tdsx_node_t *n, tdsx_dialer_t *d, const tdsx_member_t *w)
{
    char addr[TDSX_HOST_MAX + 8];
    d->node = n;
    snprintf(d->id, sizeof d->id, "%s", w->id);
    snprintf(addr, sizeof addr, "%s:%u", w->host, (unsigned)w->port);
    if (tdsx_config_split_addr(addr, d->host, sizeof d->host, &d->port) != 0)
        return TDSX_E_CONFIG;
    uv_timer_init(n->loop, &d->timer);
    d->timer.data = d;
    n->n_dialers++;
    return 0;
}

void tdsx__node_witness_dial(tdsx_node_t *n)
{
    /* The slot after the peers is kept for the witness while no registry named it. */
    if (!n->dialers || n->draining || !witness_needs_dialer(n) || n->n_dialers != n->cfg.n_peers)
        return;
    const tdsx_member_t *w = tdsx_registry_find(n->registry, n->cfg.witness);
    if (!w)
        return;
    tdsx_dialer_t *d = &n->dialers[n->cfg.n_peers];
    if (witness_dialer_init(n, d, w) != 0) {
        tdsx_log(TDSX_LOG_WARN, "log.witness_endpoint", TDSX_KV_S("witness", w->id),
                 TDSX_KV_S("reason", "the registry's endpoint is not host:port"));
        return;
    }
    tdsx_log(TDSX_LOG_INFO, "log.witness_dialled", TDSX_KV_S("witness", w->id));
    dial(d);
}

/* A dialled connection exists from the dial on, not only once open: remember it early so a
 * second dial does not race the first. */
static int start_dialers(tdsx_node_t *n)
{
    int wd = witness_needs_dialer(n);
    const tdsx_member_t *w = wd ? tdsx_registry_find(n->registry, n->cfg.witness) : NULL;
    size_t count = n->cfg.n_peers + (wd ? 1 : 0);
    if (count == 0)
        return 0;
    n->dialers = tdsx_calloc(count, sizeof *n->dialers);
    if (!n->dialers)
        return TDSX_E_NOMEM;
    for (size_t i = 0; i < n->cfg.n_peers; i++) {
        tdsx_dialer_t *d = &n->dialers[i];
        d->node = n;
        snprintf(d->id, sizeof d->id, "%s", n->cfg.peers[i].id);
        if (tdsx_config_split_addr(n->cfg.peers[i].address, d->host, sizeof d->host, &d->port) != 0)
            return TDSX_E_CONFIG;
        uv_timer_init(n->loop, &d->timer);
        d->timer.data = d;
        n->n_dialers++;
    }
    /* A witness no registry names yet keeps its slot until a bundle brings it. */
    if (w && witness_dialer_init(n, &n->dialers[n->cfg.n_peers], w) != 0)
        return TDSX_E_CONFIG;
    if (wd && !w)
        tdsx_log(TDSX_LOG_WARN, "log.witness_pending", TDSX_KV_S("witness", n->cfg.witness),
                 TDSX_KV_S("reason", "not in the member registry yet: dialled once a trust bundle "
                                     "names it"));
    for (size_t i = 0; i < n->n_dialers; i++)
        dial(&n->dialers[i]);
    return 0;
}

/* ---- listening, signals ----------------------------------------------------------------- */

static void on_connection(uv_stream_t *server, int status)
{
    tdsx_node_t *n = server->data;
    if (status < 0) {
        tdsx_log(TDSX_LOG_WARN, "listen.error", TDSX_KV_S("reason", uv_strerror(status)));
        return;
    }
    tdsx__conn_accept(n);
}

static int start_listener(tdsx_node_t *n)
{
    char host[TDSX_HOST_MAX + 1];
    int port;
    struct sockaddr_storage ss;
    if (!n->cfg.listen)
        return 0;
    if (tdsx_config_split_addr(n->cfg.listen, host, sizeof host, &port) != 0)
        return TDSX_E_CONFIG;
    if (uv_ip4_addr(host, port, (struct sockaddr_in *)&ss) != 0 &&
        uv_ip6_addr(host, port, (struct sockaddr_in6 *)&ss) != 0)
        return TDSX_E_CONFIG;
    uv_tcp_init(n->loop, &n->listener);
    n->listener.data = n;
    n->listening = 1;
    int rc = uv_tcp_bind(&n->listener, (struct sockaddr *)&ss, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&n->listener, 511, on_connection);
    if (rc) {
        tdsx_log(TDSX_LOG_ERROR, "listen.failed", TDSX_KV_S("listen", n->cfg.listen),
                 TDSX_KV_S("reason", uv_strerror(rc)));
        return TDSX_E_IO;
    }
    return 0;
}

static void on_drain_deadline(uv_timer_t *t)
{
    tdsx_node_t *n = t->data;
    tdsx_log(TDSX_LOG_WARN, "node.drain_deadline", TDSX_KV_I("connections", n->n_conns));
    for (tdsx_conn_t *c = tdsx__conn_next(n, NULL), *next; c; c = next) {
        next = tdsx__conn_next(n, c);
        tdsx__conn_fail(c, TDSX_E_DRAINING, "drain deadline");
    }
}

static void close_node_handles(tdsx_node_t *n)
{
    if (!uv_is_closing((uv_handle_t *)&n->sig_term)) {
        uv_close((uv_handle_t *)&n->sig_term, NULL);
        uv_close((uv_handle_t *)&n->sig_int, NULL);
        uv_close((uv_handle_t *)&n->sig_hup, NULL);
    }
    if (!uv_is_closing((uv_handle_t *)&n->drain_timer))
        uv_close((uv_handle_t *)&n->drain_timer, NULL);
    for (size_t i = 0; i < n->n_dialers; i++)
        if (!uv_is_closing((uv_handle_t *)&n->dialers[i].timer))
            uv_close((uv_handle_t *)&n->dialers[i].timer, NULL);
    tdsx__control_stop(n);
    tdsx__bundle_stop(n);
    tdsx__http_stop(n);
    tdsx__fetch_close(n->fetch);
    n->fetch = NULL;
    tdsx__exchange_close(n);
    tdsx__log_close(n);
    tdsx__report_close(n);
}

void tdsx__node_conn_gone(tdsx_node_t *n)
{
    if (n->draining && n->n_conns == 0) {
        tdsx_log(TDSX_LOG_INFO, "node.stopped", TDSX_KV_S("id", n->self_id));
        close_node_handles(n);
    }
}

void tdsx_node_shutdown(tdsx_node_t *n)
{
    if (n->draining)
        return;
    n->draining = 1;
    tdsx_log(TDSX_LOG_INFO, "node.draining", TDSX_KV_I("connections", n->n_conns),
             TDSX_KV_I("deadline_ms", n->cfg.drain_timeout_ms));
    if (n->listening && !uv_is_closing((uv_handle_t *)&n->listener))
        uv_close((uv_handle_t *)&n->listener, NULL);
    for (size_t i = 0; i < n->n_dialers; i++) {
        n->dialers[i].closed = 1;
        uv_timer_stop(&n->dialers[i].timer);
    }
    for (tdsx_conn_t *c = tdsx__conn_next(n, NULL), *next; c; c = next) {
        next = tdsx__conn_next(n, c);
        tdsx__conn_drain(c);
    }
    if (n->n_conns == 0) {
        tdsx__node_conn_gone(n);
        return;
    }
    uv_timer_start(&n->drain_timer, on_drain_deadline, n->cfg.drain_timeout_ms, 0);
}

static void on_signal(uv_signal_t *s, int signum)
{
    tdsx_node_t *n = s->data;
    if (signum == SIGHUP) {
        /* bundle_file first: a refused bundle is logged and the one in force stays. */
        (void)!tdsx__bundle_reload(n);
        tdsx__fetch_now(n->fetch); /* and asks the mirrors now (bundle_url) */
        /* Parse into a new object; a bad file is refused and the old policy stays. */
        tdsx_policy_t *p = NULL;
        int rc = tdsx__node_load_policy(n, &p);
        if (rc) {
            tdsx_log(TDSX_LOG_ERROR, "policy.reload_refused", TDSX_KV_E("err", rc),
                     TDSX_KV_S("action", "keeping the policy in force"));
            return;
        }
        tdsx_policy_t *old = n->policy;
        n->policy = p;
        char hex[65];
        tdsx_policy_hash_hex(p, hex);
        tdsx_log(TDSX_LOG_INFO, "policy.reloaded", TDSX_KV_S("sha256", hex));
        tdsx__log_policy(n, "reload"); /* a policy change is a log entry (SPEC §11) */
        tdsx__exchange_policy_changed(n);
        tdsx_policy_free(old);
        return;
    }
    tdsx_log(TDSX_LOG_INFO, "node.signal", TDSX_KV_S("signal", signum == SIGTERM ? "TERM" : "INT"));
    tdsx_node_shutdown(n);
}

int tdsx_node_start(tdsx_node_t *n)
{
    uv_signal_init(n->loop, &n->sig_term);
    uv_signal_init(n->loop, &n->sig_int);
    uv_signal_init(n->loop, &n->sig_hup);
    uv_timer_init(n->loop, &n->drain_timer);
    n->sig_term.data = n->sig_int.data = n->sig_hup.data = n->drain_timer.data = n;
    uv_signal_start(&n->sig_term, on_signal, SIGTERM);
    uv_signal_start(&n->sig_int, on_signal, SIGINT);
    uv_signal_start(&n->sig_hup, on_signal, SIGHUP);
    int rc = tdsx__exchange_start(n);
    if (rc == 0)
        rc = tdsx__log_start(n); /* after the data_dir lock the exchange takes */
    if (rc == 0)
        rc = tdsx__report_start(n); /* chains onto the latest stored report */
    if (rc == 0)
        rc = tdsx__bundle_start(n); /* the expiry timer */
    if (rc == 0)
        rc = start_listener(n);
    if (rc == 0)
        rc = tdsx__control_start(n);
    if (rc == 0)
        rc = tdsx__http_start(n);
    if (rc == 0)
        rc = tdsx__fetch_node_start(n); /* fetches at once when bundle_url is configured */
    if (rc == 0)
        rc = start_dialers(n);
    if (rc) {
        tdsx_node_shutdown(n);
        return rc;
    }
    tdsx_log(TDSX_LOG_INFO, "node.ready", TDSX_KV_S("id", n->self_id),
             TDSX_KV_S("role", tdsx_role_name(n->cfg.role)),
             TDSX_KV_S("listen", n->cfg.listen ? n->cfg.listen : ""),
             TDSX_KV_S("control", n->cfg.control_socket), TDSX_KV_I("peers", n->n_dialers),
             TDSX_KV_I("auth_not_after", n->self_auth.not_after));
    return 0;
}

void tdsx_node_free(tdsx_node_t *n)
{
    if (!n)
        return;
    tdsx__exchange_free(n);
    tdsx__report_free(n); /* its entries' callbacks ran while the loop closed */
    tdsx__log_free(n);    /* after the exchange: nothing waits on its entries any more */
    tdsx_policy_free(n->policy);
    tdsx_taxonomy_free(n->taxonomy);
    /* Superseded TLS contexts, trust sets and registries (bundle.c). */
    tdsx__bundle_node_free(n);
    tdsx_tls_ctx_free(n->tls);
    tdsx_registry_free(n->registry);
    tdsx_trust_free(n->trust);
    tdsx_free(n->dialers);
    tdsx_free(n->read_buf);
    tdsx_config_free(&n->cfg);
    tdsx_free(n);
}
