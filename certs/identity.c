/* Roles and node identity strings (SPEC §2). */
#include "internal.h"

#include <string.h>

static const char *const role_names[] = {"none", "centre", "brain", "enterprise"};
static const char *const role_oids[] = {NULL, TDSX_OID_ROLE_CENTRE, TDSX_OID_ROLE_BRAIN,
                                        TDSX_OID_ROLE_ENTERPRISE};

const char *tdsx_role_name(tdsx_role_t role)
{
    switch (role) {
    case TDSX_ROLE_CENTRE:
    case TDSX_ROLE_BRAIN:
    case TDSX_ROLE_ENTERPRISE: return role_names[role];
    case TDSX_ROLE_NONE:
    default: return role_names[TDSX_ROLE_NONE];
    }
}

int tdsx_role_parse(const char *s, tdsx_role_t *out)
{
    if (!s || !out)
        return TDSX_E_INVAL;
    for (int r = TDSX_ROLE_CENTRE; r <= TDSX_ROLE_ENTERPRISE; r++) {
        if (strcmp(s, role_names[r]) == 0) {
            *out = (tdsx_role_t)r;
            return 0;
        }
    }
    return TDSX_E_INVAL;
}

const char *tdsx__role_oid(tdsx_role_t role)
{
    switch (role) {
    case TDSX_ROLE_CENTRE:
    case TDSX_ROLE_BRAIN:
    case TDSX_ROLE_ENTERPRISE: return role_oids[role];
    case TDSX_ROLE_NONE:
    default: return NULL;
    }
}

void tdsx_identity_id(const tdsx_identity_t *id, char *out, size_t size)
{
    if (!out || size == 0)
        return;
    if (!id) {
        out[0] = '\0';
        return;
    }
    snprintf(out, size, "%s/%s", id->uscc, id->node);
}
