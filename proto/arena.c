/* Per-message arena with a byte budget for protobuf-c decoding (h2o mem pool idea). */
#include "internal.h"

#include <stdalign.h>
#include <stddef.h>

#define ALIGN_TO alignof(max_align_t)
/* Size of an ordinary chunk, header included. Requests above a quarter of it get a chunk of
 * their own so a large bytes field does not waste the rest of a shared chunk. */
#define CHUNK_SIZE 4096u
#define DIRECT_MIN (CHUNK_SIZE / 4)

struct chunk {
    struct chunk *next;
    size_t size; /* usable bytes in data */
    size_t used;
    max_align_t data[];
};

struct tdsx_arena_s {
    ProtobufCAllocator pc;
    struct chunk *head; /* chunk that small allocations bump from; others follow it */
    size_t budget;
    size_t held; /* bytes of chunks held, headers included */
    int failure;
};

static void *pc_alloc(void *ctx, size_t size)
{
    return tdsx_arena_alloc(ctx, size);
}

static void pc_free(void *ctx, void *p)
{
    /* Everything goes at once on reset: protobuf-c's frees of partial messages are no-ops. */
    (void)ctx;
    (void)p;
}

int tdsx_arena_new(size_t budget, tdsx_arena_t **out)
{
    if (!out || budget == 0)
        return TDSX_E_INVAL;
    tdsx_arena_t *a = tdsx_calloc(1, sizeof *a);
    if (!a)
        return TDSX_E_NOMEM;
    a->pc.alloc = pc_alloc;
    a->pc.free = pc_free;
    a->pc.allocator_data = a;
    a->budget = budget;
    *out = a;
    return 0;
}

void tdsx_arena_reset(tdsx_arena_t *a)
{
    if (!a)
        return;
    struct chunk *c = a->head;
    while (c) {
        struct chunk *next = c->next;
        tdsx_free(c);
        c = next;
    }
    a->head = NULL;
    a->held = 0;
    a->failure = 0;
}

void tdsx_arena_free(tdsx_arena_t *a)
{
    if (!a)
        return;
    tdsx_arena_reset(a);
    tdsx_free(a);
}

size_t tdsx_arena_used(const tdsx_arena_t *a)
{
    return a ? a->held : 0;
}

static struct chunk *add_chunk(tdsx_arena_t *a, size_t usable)
{
    size_t total = offsetof(struct chunk, data) + usable;
    if (usable > SIZE_MAX - offsetof(struct chunk, data) || total > a->budget - a->held) {
        a->failure = TDSX_E_ARENA_BUDGET;
        return NULL;
    }
    struct chunk *c = tdsx_malloc(total);
    if (!c) {
        a->failure = TDSX_E_NOMEM;
        return NULL;
    }
    c->size = usable;
    c->used = 0;
    a->held += total;
    return c;
}

void *tdsx_arena_alloc(tdsx_arena_t *a, size_t size)
{
    if (!a)
        return NULL;
    if (size > SIZE_MAX - ALIGN_TO) {
        a->failure = TDSX_E_ARENA_BUDGET;
        return NULL;
    }
    size = size ? (size + ALIGN_TO - 1) / ALIGN_TO * ALIGN_TO : ALIGN_TO;

    struct chunk *h = a->head;
    if (h && h->size - h->used >= size) {
        void *p = (unsigned char *)h->data + h->used;
        h->used += size;
        return p;
    }
    if (size >= DIRECT_MIN && h) {
        /* Linked behind the head, which keeps serving small requests. */
        struct chunk *c = add_chunk(a, size);
        if (!c)
            return NULL;
        c->used = size;
        c->next = h->next;
        h->next = c;
        return c->data;
    }
    /* A new head; near the end of the budget take what is left rather than fail early. */
    size_t usable = CHUNK_SIZE - offsetof(struct chunk, data);
    size_t left = a->budget - a->held;
    if (left >= offsetof(struct chunk, data) && usable > left - offsetof(struct chunk, data))
        usable = (left - offsetof(struct chunk, data)) / ALIGN_TO * ALIGN_TO;
    if (usable < size)
        usable = size;
    struct chunk *c = add_chunk(a, usable);
    if (!c)
        return NULL;
    c->used = size;
    c->next = h;
    a->head = c;
    return c->data;
}

ProtobufCAllocator *tdsx__arena_protobuf(tdsx_arena_t *a)
{
    return &a->pc;
}

int tdsx__arena_take_failure(tdsx_arena_t *a)
{
    int f = a->failure;
    a->failure = 0;
    return f;
}
