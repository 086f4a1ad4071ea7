/*
 * replay.c — a main for fuzz targets without libFuzzer: runs LLVMFuzzerTestOneInput once over
 * every regular file of the corpus directory given as argv[1], so each corpus replays as an
 * ordinary test under the sanitizers. An empty or missing corpus is a failure: a target with
 * nothing to replay would pass without testing anything.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Corpus files are inputs a fuzzer kept: small. Anything bigger is a mistake in the corpus. */
#define REPLAY_FILE_CAP (16u * 1024 * 1024)

static int run_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "replay: cannot open %s\n", path);
        return -1;
    }
    uint8_t *data = NULL;
    size_t len = 0, alloc = 0;
    int rc = -1;
    for (;;) {
        if (len == alloc) {
            size_t na = alloc ? alloc * 2 : 4096;
            if (na > REPLAY_FILE_CAP) {
                fprintf(stderr, "replay: %s is larger than the cap\n", path);
                goto fail;
            }
            uint8_t *np = realloc(data, na);
            if (!np)
                goto fail;
            data = np;
            alloc = na;
        }
        size_t got = fread(data + len, 1, alloc - len, f);
        len += got;
        if (got == 0)
            break;
    }
    if (ferror(f)) {
        fprintf(stderr, "replay: cannot read %s\n", path);
        goto fail;
    }
    /* An exact-size heap copy, so ASan flags a target that reads one byte past the input. */
    uint8_t *exact = malloc(len ? len : 1);
    if (!exact)
        goto fail;
    if (len)
        memcpy(exact, data, len);
    LLVMFuzzerTestOneInput(exact, len);
    free(exact);
    rc = 0;
fail:
    free(data);
    fclose(f);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s CORPUS-DIR\n", argv[0]);
        return 2;
    }
    DIR *d = opendir(argv[1]);
    if (!d) {
        fprintf(stderr, "replay: cannot open corpus directory %s\n", argv[1]);
        return 1;
    }
    unsigned long runs = 0, failures = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        size_t n = strlen(argv[1]) + strlen(e->d_name) + 2;
        char *path = malloc(n);
        if (!path) {
            failures++;
            break;
        }
        snprintf(path, n, "%s/%s", argv[1], e->d_name);
        struct stat st;
        if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
            if (run_file(path) == 0)
                runs++;
            else
                failures++;
        }
        free(path);
    }
    closedir(d);
    printf("replay: %lu inputs from %s, %lu unreadable\n", runs, argv[1], failures);
    if (runs == 0) {
        fprintf(stderr, "replay: corpus %s is empty\n", argv[1]);
        return 1;
    }
    return failures ? 1 : 0;
}
