/* SPDX-License-Identifier: MIT */
/*
 * check_run.h - the one way each Check test program runs its suite and turns
 * the result into an exit status for ctest.
 */
#ifndef PEERDIST_CHECK_RUN_H
#define PEERDIST_CHECK_RUN_H

#include <check.h>
#include <stdlib.h>

static inline int check_run(Suite *s)
{
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

#endif
