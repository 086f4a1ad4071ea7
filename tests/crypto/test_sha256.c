/* SHA-256 on OpenSSL EVP: FIPS 180-2 known answers, streaming in odd-sized pieces, context
 * reuse, and misuse that must be refused rather than crash. */
#include "support.h"

#include <string.h>

#include <sodium.h>

#include "crypto.h"

static void expect_hex(const uint8_t got[TDSX_HASH_LEN], const char *hex)
{
    char s[2 * TDSX_HASH_LEN + 1];
    tdsx_hex_encode(s, got, TDSX_HASH_LEN);
    assert_string_equal(s, hex);
}

/* FIPS 180-2 appendix B: "abc", the 448-bit two-block message and one million 'a'. */
#define HEX_EMPTY "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define HEX_ABC "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
#define MSG_448 "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"
#define HEX_448 "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
#define HEX_MILLION_A "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"

static void one_shot_known_answers(void **state)
{
    (void)state;
    uint8_t d[TDSX_HASH_LEN];
    assert_int_equal(tdsx_sha256(NULL, 0, d), 0);
    expect_hex(d, HEX_EMPTY);
    assert_int_equal(tdsx_sha256("abc", 3, d), 0);
    expect_hex(d, HEX_ABC);
    assert_int_equal(tdsx_sha256(MSG_448, strlen(MSG_448), d), 0);
    expect_hex(d, HEX_448);
}

static void million_a_in_odd_sized_updates(void **state)
{
    (void)state;
    static uint8_t a[1000];
    memset(a, 'a', sizeof a);
    tdsx_sha256_t h;
    assert_int_equal(tdsx_sha256_init(&h), 0);
    /* Piece sizes cycle through primes so updates straddle every 64-byte block boundary. */
    static const size_t pieces[] = {1, 3, 7, 13, 63, 64, 65, 127, 331, 997};
    size_t done = 0, i = 0;
    while (done < 1000000) {
        size_t n = pieces[i++ % (sizeof pieces / sizeof pieces[0])];
        if (n > 1000000 - done)
            n = 1000000 - done;
        assert_int_equal(tdsx_sha256_update(&h, a, n), 0);
        done += n;
    }
    uint8_t d[TDSX_HASH_LEN];
    assert_int_equal(tdsx_sha256_final(&h, d), 0);
    expect_hex(d, HEX_MILLION_A);
    tdsx_sha256_free(&h);
}

static void context_hashes_many_messages(void **state)
{
    (void)state;
    tdsx_sha256_t h;
    uint8_t d[TDSX_HASH_LEN];
    assert_int_equal(tdsx_sha256_init(&h), 0);
    assert_int_equal(tdsx_sha256_update(&h, "ab", 2), 0);
    assert_int_equal(tdsx_sha256_update(&h, "c", 1), 0);
    assert_int_equal(tdsx_sha256_final(&h, d), 0);
    expect_hex(d, HEX_ABC);
    /* After final the context starts over: no trace of "abc" in the next digest. */
    assert_int_equal(tdsx_sha256_final(&h, d), 0);
    expect_hex(d, HEX_EMPTY);
    assert_int_equal(tdsx_sha256_update(&h, MSG_448, strlen(MSG_448)), 0);
    assert_int_equal(tdsx_sha256_final(&h, d), 0);
    expect_hex(d, HEX_448);
    tdsx_sha256_free(&h);
    tdsx_sha256_free(&h);
}

/* Cross-check against libsodium's independent implementation at every length around the block
 * and padding boundaries (55/56/64 bytes are where padding spills into a second block). */
static void agrees_with_libsodium_at_every_boundary(void **state)
{
    (void)state;
    uint8_t msg[300];
    for (size_t i = 0; i < sizeof msg; i++)
        msg[i] = (uint8_t)(i * 131 + 7);
    for (size_t n = 0; n <= sizeof msg; n++) {
        uint8_t ours[TDSX_HASH_LEN], theirs[crypto_hash_sha256_BYTES];
        assert_int_equal(tdsx_sha256(msg, n, ours), 0);
        crypto_hash_sha256(theirs, msg, n);
        assert_memory_equal(ours, theirs, TDSX_HASH_LEN);
    }
}

static void one_bit_changes_the_digest(void **state)
{
    (void)state;
    uint8_t a[TDSX_HASH_LEN], b[TDSX_HASH_LEN];
    assert_int_equal(tdsx_sha256("abc", 3, a), 0);
    assert_int_equal(tdsx_sha256("abb", 3, b), 0);
    assert_memory_not_equal(a, b, TDSX_HASH_LEN);
    /* Length matters too: "abc" and "abc\0" differ. */
    assert_int_equal(tdsx_sha256("abc", 4, b), 0);
    assert_memory_not_equal(a, b, TDSX_HASH_LEN);
}

static void null_arguments_are_refused(void **state)
{
    (void)state;
    uint8_t d[TDSX_HASH_LEN];
    assert_int_equal(tdsx_sha256(NULL, 1, d), TDSX_E_INVAL);
    assert_int_equal(tdsx_sha256("a", 1, NULL), TDSX_E_INVAL);
    assert_int_equal(tdsx_sha256_init(NULL), TDSX_E_INVAL);
    tdsx_sha256_t h;
    assert_int_equal(tdsx_sha256_init(&h), 0);
    assert_int_equal(tdsx_sha256_update(&h, NULL, 5), TDSX_E_INVAL);
    assert_int_equal(tdsx_sha256_update(NULL, "a", 1), TDSX_E_INVAL);
    assert_int_equal(tdsx_sha256_final(&h, NULL), TDSX_E_INVAL);
    assert_int_equal(tdsx_sha256_final(NULL, d), TDSX_E_INVAL);
    /* The refused calls left the context intact. */
    assert_int_equal(tdsx_sha256_update(&h, "abc", 3), 0);
    assert_int_equal(tdsx_sha256_final(&h, d), 0);
    expect_hex(d, HEX_ABC);
    tdsx_sha256_free(&h);
    tdsx_sha256_free(NULL);
}

static void freed_context_is_refused(void **state)
{
    (void)state;
    tdsx_sha256_t h;
    uint8_t d[TDSX_HASH_LEN];
    assert_int_equal(tdsx_sha256_init(&h), 0);
    assert_int_equal(tdsx_sha256_update(&h, "abc", 3), 0);
    tdsx_sha256_free(&h);
    assert_int_equal(tdsx_sha256_update(&h, "abc", 3), TDSX_E_INVAL);
    assert_int_equal(tdsx_sha256_final(&h, d), TDSX_E_INVAL);
}

static void zeroed_context_is_refused(void **state)
{
    (void)state;
    tdsx_sha256_t h = {0};
    uint8_t d[TDSX_HASH_LEN];
    assert_int_equal(tdsx_sha256_update(&h, "abc", 3), TDSX_E_INVAL);
    assert_int_equal(tdsx_sha256_final(&h, d), TDSX_E_INVAL);
    tdsx_sha256_free(&h);
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(one_shot_known_answers),
        cmocka_unit_test(million_a_in_odd_sized_updates),
        cmocka_unit_test(context_hashes_many_messages),
        cmocka_unit_test(agrees_with_libsodium_at_every_boundary),
        cmocka_unit_test(one_bit_changes_the_digest),
        cmocka_unit_test(null_arguments_are_refused),
        cmocka_unit_test(freed_context_is_refused),
        cmocka_unit_test(zeroed_context_is_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
