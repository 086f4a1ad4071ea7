/*
 * control.c — the local control socket (SPEC §15): a Unix domain socket, mode 0600, through
 * which `tdsx` asks the daemon to act with the node's keys. Each message is framed like the
 * network (4-byte length + LocalRequest / LocalResponse).
 *
 * The server side lives on the node's loop; the client side (tdsx_control_call) is a plain
 * blocking call for the CLI and tests.
 */
#include "bundle.h"
#include "daemon.h"
#include "exchange.h"
#include "http.h"

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "local.pb-c.h"

struct tdsx_ctl_client_s {
    uv_pipe_t pipe;
    tdsx_node_t *node;
    tdsx_ctl_client_t *prev, *next;
    uint64_t serial;
    tdsx_frame_decoder_t dec;
    tdsx_arena_t *arena;
    struct ctl_write_s *held, **held_tail; /* answers the group commit holds (exchange.h) */
};

typedef struct ctl_write_s {
    uv_write_t req;
    uv_buf_t buf;
    struct ctl_write_s *next;
    uint8_t data[];
} ctl_write_t;

static void on_client_closed(uv_handle_t *h)
{
    tdsx_ctl_client_t *cl = h->data;
    tdsx_node_t *n = cl->node;
    if (cl->prev)
        cl->prev->next = cl->next;
    else
        n->control_clients = cl->next;
    if (cl->next)
        cl->next->prev = cl->prev;
    n->n_control_clients--;
    for (ctl_write_t *w = cl->held, *next; w; w = next) {
        next = w->next;
        tdsx_free(w);
    }
    tdsx_frame_decoder_free(&cl->dec);
    tdsx_arena_free(cl->arena);
    tdsx_free(cl);
}

static void close_client(tdsx_ctl_client_t *cl)
{
    if (!uv_is_closing((uv_handle_t *)&cl->pipe))
        uv_close((uv_handle_t *)&cl->pipe, on_client_closed);
}

static void on_written(uv_write_t *req, int status)
{
    (void)status;
    tdsx_free(req);
}

uint64_t tdsx__control_serial(const tdsx_ctl_client_t *cl)
{
    return cl->serial;
}

tdsx_ctl_client_t *tdsx__control_find(tdsx_node_t *n, uint64_t serial)
{
    for (tdsx_ctl_client_t *cl = n->control_clients; cl; cl = cl->next)
        if (cl->serial == serial && !uv_is_closing((uv_handle_t *)&cl->pipe))
            return cl;
    return NULL;
}

static int send_response(tdsx_ctl_client_t *cl, const Tdsx__LocalResponse *resp);

void tdsx__control_reply(tdsx_ctl_client_t *cl, const Tdsx__LocalResponse *resp)
{
    if (send_response(cl, resp) != 0)
        close_client(cl);
}

static int send_response(tdsx_ctl_client_t *cl, const Tdsx__LocalResponse *resp)
{
    size_t len = tdsx__local_response__get_packed_size(resp);
    if (len > TDSX_CONTROL_FRAME_CAP)
        return TDSX_E_TOOBIG;
    ctl_write_t *w = tdsx_malloc(sizeof *w + 4 + len);
    if (!w)
        return TDSX_E_NOMEM;
    w->data[0] = (uint8_t)(len >> 24);
    w->data[1] = (uint8_t)(len >> 16);
    w->data[2] = (uint8_t)(len >> 8);
    w->data[3] = (uint8_t)len;
    tdsx__local_response__pack(resp, w->data + 4);
    w->buf = uv_buf_init((char *)w->data, (unsigned)(4 + len));
    w->next = NULL;
    if (cl->held || tdsx__exchange_holding(cl->node)) {
        if (!cl->held)
            cl->held_tail = &cl->held;
        *cl->held_tail = w;
        cl->held_tail = &w->next;
        return 0;
    }
    int rc = uv_write(&w->req, (uv_stream_t *)&cl->pipe, &w->buf, 1, on_written);
    if (rc) {
        tdsx_free(w);
        return TDSX_E_IO;
    }
    return 0;
}

void tdsx__control_release(tdsx_node_t *n)
{
    for (tdsx_ctl_client_t *cl = n->control_clients, *next; cl; cl = next) {
        next = cl->next;
        ctl_write_t *w = cl->held;
        cl->held = NULL;
        if (uv_is_closing((uv_handle_t *)&cl->pipe)) {
            cl->held = w; /* freed with the client */
            continue;
        }
        for (ctl_write_t *wn; w; w = wn) {
            wn = w->next;
            if (uv_write(&w->req, (uv_stream_t *)&cl->pipe, &w->buf, 1, on_written) != 0) {
                tdsx_free(w);
                for (w = wn; w; w = wn) {
                    wn = w->next;
                    tdsx_free(w);
                }
                close_client(cl);
                break;
            }
        }
    }
}

static int answer_status(tdsx_ctl_client_t *cl, Tdsx__LocalResponse *resp)
{
    tdsx_node_t *n = cl->node;
    Tdsx__StatusResponse *st = tdsx_arena_alloc(cl->arena, sizeof *st);
    size_t n_counters = 0;
#define X(field, name) n_counters++;
    TDSX_COUNTERS(X)
#undef X
    Tdsx__PeerStatus *peers = tdsx_arena_alloc(cl->arena, (n->n_conns + 1) * sizeof *peers);
    Tdsx__PeerStatus **pp = tdsx_arena_alloc(cl->arena, (n->n_conns + 1) * sizeof *pp);
    Tdsx__Counter *cs = tdsx_arena_alloc(cl->arena, n_counters * sizeof *cs);
    Tdsx__Counter **cp = tdsx_arena_alloc(cl->arena, n_counters * sizeof *cp);
    if (!st || !peers || !pp || !cs || !cp)
        return TDSX_E_NOMEM;
    tdsx__status_response__init(st);
    st->role = (char *)tdsx_role_name(n->cfg.role);
    st->id = n->self_id;
    st->org = n->self_auth.org;
    st->listen = n->cfg.listen ? n->cfg.listen : "";
    st->auth_not_after = n->self_auth.not_after;
    st->sign_not_after = n->self_sign.not_after;
    st->version = TDSX_VERSION;
    st->started_at = n->started_at;
    st->draining = n->draining != 0;
    tdsx__bundle_status(n, st);
    tdsx__fetch_status(n, st); /* last bundle download (http.h) */
    size_t i = 0;
    for (tdsx_conn_t *c = tdsx__conn_next(n, NULL); c && i <= n->n_conns;
         c = tdsx__conn_next(n, c), i++) {
        tdsx__peer_status__init(&peers[i]);
        tdsx__conn_status(c, &peers[i]);
        pp[i] = &peers[i];
    }
    st->n_peers = i;
    st->peers = pp;
    size_t k = 0;
#define X(field, cname)                                                                            \
    tdsx__counter__init(&cs[k]);                                                                   \
    cs[k].name = cname;                                                                            \
    cs[k].value = n->counters.field;                                                               \
    cp[k] = &cs[k];                                                                                \
    k++;
    TDSX_COUNTERS(X)
#undef X
    st->n_counters = k;
    st->counters = cp;
    resp->body_case = TDSX__LOCAL_RESPONSE__BODY_STATUS;
    resp->status = st;
    return 0;
}

static void handle_request(tdsx_ctl_client_t *cl, tdsx_bytes_t body)
{
    Tdsx__LocalRequest *req = NULL;
    Tdsx__LocalResponse resp = TDSX__LOCAL_RESPONSE__INIT;
    Tdsx__LocalError le = TDSX__LOCAL_ERROR__INIT;
    int rc = tdsx_proto_unpack(cl->arena, &tdsx__local_request__descriptor, body,
                               (ProtobufCMessage **)&req);
    if (rc == 0) {
        resp.id = req->id;
        switch (req->body_case) {
        case TDSX__LOCAL_REQUEST__BODY_STATUS: rc = answer_status(cl, &resp); break;
        case TDSX__LOCAL_REQUEST__BODY_SEND:
        case TDSX__LOCAL_REQUEST__BODY_PULL:
            /* An expired trust bundle stops every transfer (SPEC §3). */
            if ((rc = tdsx__bundle_check(cl->node)) == 0)
                rc = tdsx__exchange_local(cl->node, cl, req, cl->arena, &resp);
            break;
        default: rc = tdsx__exchange_local(cl->node, cl, req, cl->arena, &resp); break;
        }
    }
    if (rc == 1) {
        /* Answered later, when the network side is done. */
        tdsx_arena_reset(cl->arena);
        return;
    }
    if (rc) {
        le.code = tdsx_err_wire(rc);
        le.message = (char *)tdsx_strerror(rc);
        resp.body_case = TDSX__LOCAL_RESPONSE__BODY_ERROR;
        resp.error = &le;
    }
    if (send_response(cl, &resp) != 0)
        close_client(cl);
    tdsx_arena_reset(cl->arena);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    (void)suggested;
    buf->base = tdsx_malloc(16384);
    buf->len = buf->base ? 16384 : 0;
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    tdsx_ctl_client_t *cl = s->data;
    if (nread > 0) {
        tdsx_bytes_t in = tdsx_bytes(buf->base, (size_t)nread), body;
        int rc;
        while ((rc = tdsx_frame_decoder_next(&cl->dec, &in, &body)) > 0)
            handle_request(cl, body);
        if (rc < 0)
            close_client(cl);
    } else if (nread < 0) {
        close_client(cl);
    }
    tdsx_free(buf->base);
}

static void on_control_connection(uv_stream_t *server, int status)
{
    tdsx_node_t *n = server->data;
    if (status < 0)
        return;
    tdsx_ctl_client_t *cl = tdsx_calloc(1, sizeof *cl);
    if (!cl)
        return;
    cl->node = n;
    if (tdsx_frame_decoder_init(&cl->dec, TDSX_CONTROL_FRAME_CAP) != 0 ||
        tdsx_arena_new(4 * TDSX_CONTROL_FRAME_CAP, &cl->arena) != 0) {
        tdsx_frame_decoder_free(&cl->dec);
        tdsx_free(cl);
        return;
    }
    uv_pipe_init(n->loop, &cl->pipe, 0);
    cl->pipe.data = cl;
    cl->serial = ++n->next_ctl_serial;
    cl->next = n->control_clients;
    if (cl->next)
        cl->next->prev = cl;
    n->control_clients = cl;
    n->n_control_clients++;
    if (uv_accept(server, (uv_stream_t *)&cl->pipe) != 0 ||
        n->n_control_clients > TDSX_CONTROL_MAX_CLIENTS ||
        uv_read_start((uv_stream_t *)&cl->pipe, on_alloc, on_read) != 0)
        close_client(cl);
}

int tdsx__control_start(tdsx_node_t *n)
{
    const char *path = n->cfg.control_socket;
    struct stat st;
    /* A socket left by a daemon that died is replaced; anything else at the path is not. */
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            tdsx_log(TDSX_LOG_ERROR, "control.failed", TDSX_KV_S("path", path),
                     TDSX_KV_S("reason", "path exists and is not a socket"));
            return TDSX_E_EXISTS;
        }
        unlink(path);
    }
    uv_pipe_init(n->loop, &n->control, 0);
    n->control.data = n;
    n->control_open = 1;
    mode_t old = umask(0177);
    int rc = uv_pipe_bind(&n->control, path);
    umask(old);
    if (rc == 0)
        rc = chmod(path, 0600) == 0 ? 0 : -errno;
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&n->control, 16, on_control_connection);
    if (rc) {
        tdsx_log(TDSX_LOG_ERROR, "control.failed", TDSX_KV_S("path", path),
                 TDSX_KV_S("reason", uv_strerror(rc)));
        return TDSX_E_IO;
    }
    return 0;
}

void tdsx__control_stop(tdsx_node_t *n)
{
    if (n->control_open && !uv_is_closing((uv_handle_t *)&n->control)) {
        uv_close((uv_handle_t *)&n->control, NULL);
        unlink(n->cfg.control_socket);
    }
    for (tdsx_ctl_client_t *cl = n->control_clients; cl; cl = cl->next)
        close_client(cl);
}

/* ---- client ------------------------------------------------------------------------------ */

static int write_all(int fd, const uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return TDSX_E_IO;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

int tdsx_control_call(const char *path, const Tdsx__LocalRequest *req, tdsx_arena_t *arena,
                      int timeout_ms, tdsx_control_progress_cb progress, void *ud,
                      Tdsx__LocalResponse **resp)
{
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    if (strlen(path) >= sizeof sa.sun_path)
        return TDSX_E_INVAL;
    memcpy(sa.sun_path, path, strlen(path) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return TDSX_E_IO;
    int rc = 0;
    tdsx_buf_t out;
    tdsx_frame_decoder_t dec;
    tdsx_arena_t *scratch = NULL;
    tdsx_buf_init(&out, TDSX_CONTROL_FRAME_CAP + 4);
    if (tdsx_frame_decoder_init(&dec, TDSX_CONTROL_FRAME_CAP) != 0 ||
        tdsx_arena_new(1u << 20, &scratch) != 0) {
        close(fd);
        tdsx_frame_decoder_free(&dec);
        return TDSX_E_NOMEM;
    }
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        rc = errno == ENOENT || errno == ECONNREFUSED ? TDSX_E_NOTFOUND : TDSX_E_IO;
        goto done;
    }
    size_t len = tdsx__local_request__get_packed_size(req);
    if ((rc = tdsx_buf_u32be(&out, (uint32_t)len)) != 0 || (rc = tdsx_buf_reserve(&out, len)) != 0)
        goto done;
    tdsx__local_request__pack(req, out.p + out.len);
    out.len += len;
    if ((rc = write_all(fd, out.p, out.len)) != 0)
        goto done;
    for (;;) {
        struct pollfd pfd = {fd, POLLIN, 0};
        int pr = poll(&pfd, 1, timeout_ms);
        if (pr == 0) {
            rc = TDSX_E_TIMEOUT;
            goto done;
        }
        if (pr < 0 && errno == EINTR)
            continue;
        uint8_t buf[16384];
        ssize_t r = read(fd, buf, sizeof buf);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            rc = TDSX_E_CLOSED;
            goto done;
        }
        tdsx_bytes_t in = tdsx_bytes(buf, (size_t)r), body;
        while ((rc = tdsx_frame_decoder_next(&dec, &in, &body)) > 0) {
            Tdsx__LocalResponse *m = NULL;
            rc = tdsx_proto_unpack(scratch, &tdsx__local_response__descriptor, body,
                                   (ProtobufCMessage **)&m);
            if (rc)
                goto done;
            if (m->body_case == TDSX__LOCAL_RESPONSE__BODY_PROGRESS) {
                if (progress)
                    progress(ud, m);
                tdsx_arena_reset(scratch);
                continue;
            }
            /* The final answer is decoded again into the caller's arena, where it lives. */
            rc = tdsx_proto_unpack(arena, &tdsx__local_response__descriptor, body,
                                   (ProtobufCMessage **)resp);
            goto done;
        }
        if (rc < 0)
            goto done;
    }
done:
    tdsx_arena_free(scratch);
    tdsx_frame_decoder_free(&dec);
    tdsx_buf_free(&out);
    close(fd);
    return rc;
}
