/* 统一社会信用代码 validation, GB 32100-2015, with the GB 11714 organisation-code check. */
#include "certs.h"

#include <string.h>

/* GB 32100-2015 §4: the 31 code characters in value order; I O S V Z are never used. */
static const char uscc_alphabet[] = "0123456789ABCDEFGHJKLMNPQRTUWXY";

/* 3^(i-1) mod 31 for positions 1..17. */
static const int uscc_weights[17] = {1,  3,  9,  27, 19, 26, 16, 17, 20,
                                     29, 25, 13, 8,  24, 10, 30, 28};

/* GB 11714-1997 weights for the eight body characters of the organisation code. */
static const int org_weights[8] = {3, 7, 9, 10, 5, 8, 4, 2};

static int uscc_value(char c)
{
    /* Lower case is refused rather than folded: the code is printed upper case on the
     * business licence and a certificate must carry exactly that string. */
    const char *p = c ? strchr(uscc_alphabet, c) : NULL;
    return p ? (int)(p - uscc_alphabet) : -1;
}

/* GB 11714 allows the full Latin alphabet in the body (A = 10 ... Z = 35). */
static int org_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'Z')
        return c - 'A' + 10;
    return -1;
}

char tdsx_uscc_check_char(const char *first17)
{
    if (!first17)
        return '\0';
    int sum = 0;
    for (size_t i = 0; i < 17; i++) {
        int v = uscc_value(first17[i]);
        if (v < 0)
            return '\0';
        sum += v * uscc_weights[i];
    }
    int c = 31 - sum % 31;
    return uscc_alphabet[c == 31 ? 0 : c];
}

/* 1 when the organisation code at code[8..16] passes its own check, else 0. */
static int org_code_ok(const char *org)
{
    int sum = 0;
    for (size_t i = 0; i < 8; i++) {
        int v = org_value(org[i]);
        if (v < 0)
            return 0;
        sum += v * org_weights[i];
    }
    int c = 11 - sum % 11;
    char want = c == 10 ? 'X' : c == 11 ? '0' : (char)('0' + c);
    return org[8] == want;
}

int tdsx_uscc_check(const char *code, int *org_warning)
{
    if (org_warning)
        *org_warning = 0;
    if (!code)
        return TDSX_E_INVAL;
    if (strnlen(code, TDSX_USCC_LEN + 1) != TDSX_USCC_LEN)
        return TDSX_E_USCC_LENGTH;
    for (size_t i = 0; i < TDSX_USCC_LEN; i++) {
        if (uscc_value(code[i]) < 0)
            return TDSX_E_USCC_CHAR;
    }
    if (tdsx_uscc_check_char(code) != code[17])
        return TDSX_E_USCC_CHECK;
    if (org_warning)
        *org_warning = !org_code_ok(code + 8);
    return 0;
}
