/* tc/dist.h as a job of one (every build), and the splits every rank
 * computes alike: contiguous, balanced, covering every item once. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "tc/dist.h"
#include "testutil.h"

static void test_range(void)
{
    for (int size = 1; size <= 7; size++) {
        tc_dist d = {0};
        d.size = size;
        for (size_t n = 0; n <= 23; n++) {
            size_t next = 0, lo = n, hi = 0;
            for (int r = 0; r < size; r++) {
                size_t b, e;
                tc_dist_range(&d, r, n, &b, &e);
                CHECK(b == next && e >= b);
                next = e;
                lo = e - b < lo ? e - b : lo;
                hi = e - b > hi ? e - b : hi;
            }
            CHECK(next == n);
            CHECK(hi - lo <= 1);
        }
    }
    size_t b, e;
    tc_dist_range(NULL, 0, 9, &b, &e);
    CHECK(b == 0 && e == 9);
}

static void test_owner(void)
{
    /* Weights like the analysis's: a heavy item among light ones. */
    double w[12] = {17, 48, 45, 42, 39, 200, 33, 30, 0, 24, 21, 1};
    double total = 0;
    for (int i = 0; i < 12; i++)
        total += w[i];
    for (int size = 1; size <= 5; size++) {
        tc_dist d = {0};
        d.size = size;
        double before = 0, share[5] = {0};
        int last = 0;
        for (int i = 0; i < 12; i++) {
            int r = tc_dist_owner(&d, before, w[i], total);
            CHECK(r >= last && r < size); /* in order */
            last = r;
            share[r] += w[i];
            before += w[i];
        }
        /* No rank holds more than its share plus the heaviest item. */
        for (int r = 0; r < size; r++)
            CHECK(share[r] <= total / size + 200);
    }
    CHECK(tc_dist_owner(NULL, 5, 1, 10) == 0);
}

static void test_one(void)
{
    tc_dist d;
    tc_error err = {{0}};
    int argc = 1;
    char *args[] = {"test_dist", NULL}, **argv = args;
    CHECK_OK(tc_dist_init(&d, &argc, &argv, &err), &err);
    CHECK(d.rank == 0 && d.size == 1 && !d.mpi);
    /* A failure of the only rank stays its own sentence, unprefixed. */
    tc_err(&err, "model.gguf: cannot open");
    int failed = -2;
    CHECK(tc_dist_agree(&d, TC_ERR, &err, &failed) == TC_ERR && failed == 0);
    CHECK(strcmp(err.msg, "model.gguf: cannot open") == 0);
    CHECK(tc_dist_agree(&d, TC_OK, &err, &failed) == TC_OK && failed == -1);
    /* The exact sum: x + 0.0 on one rank as on many, so -0.0 becomes +0.0. */
    double v[3] = {-0.0, 1.5, -2.25};
    CHECK_OK(tc_dist_sum_disjoint(&d, TC_OK, v, 3, &err), &err);
    CHECK(v[0] == 0.0 && !signbit(v[0]) && v[1] == 1.5 && v[2] == -2.25);
    CHECK(tc_dist_sum_disjoint(&d, TC_ERR, v, 3, &err) == TC_ERR);
    char rec[4][8] = {"a", "b", "c", "d"};
    CHECK_OK(tc_dist_allgather(&d, TC_OK, rec, 4, 8, &err), &err);
    CHECK(!strcmp(rec[3], "d"));
    CHECK(tc_dist_max_int(&d, 3) == 3);
    CHECK(d.bytes_out == 0 && d.bytes_in == 0);
    tc_dist_finish(&d);
}

int main(void)
{
    test_range();
    test_owner();
    test_one();
    return tu_finish("test_dist");
}
