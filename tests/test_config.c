/* SPDX-License-Identifier: MIT */
/*
 * test_config.c - peerdistd.conf as daemon/config.c reads it: every key and its bounds, and
 * the message for each kind of mistake, which names the file, the line and what is wrong
 * there (libinih alone reports an unclosed section as "unknown section []" and a line past
 * its 199 characters as a syntax error on a later line).
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "check_run.h"
#include "config.h"

static char path[64];

static void setup(void)
{
    snprintf(path, sizeof(path), "/tmp/pdconf.XXXXXX");
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    close(fd);
}

static void teardown(void)
{
    unlink(path);
}

/* Loads text as the configuration file: 0 or -1, the message in err. */
static int load(const char *text, struct config *cfg, char *err, size_t errlen)
{
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
    config_defaults(cfg);
    snprintf(cfg->config_path, sizeof(cfg->config_path), "%s", path);
    cfg->config_explicit = true;
    err[0] = '\0';
    return config_load_file(cfg, err, errlen);
}

/* The text must be refused with a message naming line `line` and containing `what`. */
static void refused(const char *text, int line, const char *what)
{
    struct config cfg;
    char err[512], where[96];
    ck_assert_int_eq(load(text, &cfg, err, sizeof(err)), -1);
    snprintf(where, sizeof(where), "%s:%d: ", path, line);
    ck_assert_msg(strncmp(err, where, strlen(where)) == 0, "'%s' should start '%s'", err, where);
    ck_assert_msg(strstr(err, what), "'%s' should say '%s'", err, what);
}

START_TEST(every_key)
{
    struct config cfg;
    char err[512];
    ck_assert_int_eq(load("[peerdistd]\n"
                          "mode = disabled\n"
                          "socket = /run/x.sock\n"
                          "database = /var/x.db\n"
                          "state_dir = /var/x\n"
                          "log_level = debug\n"
                          "max_connections = 100\n"
                          "max_connections_per_uid = 7\n"
                          "hello_timeout = 3\n"
                          "hello_idle_timeout = 2\n"
                          "memory_budget = 48M\n",
                         &cfg, err, sizeof(err)),
        0);
    ck_assert_int_eq(cfg.mode, MODE_DISABLED);
    ck_assert_str_eq(cfg.socket_path, "/run/x.sock");
    ck_assert_str_eq(cfg.db_path, "/var/x.db");
    ck_assert_str_eq(cfg.state_dir, "/var/x");
    ck_assert_int_eq(cfg.log_level, LOG_LVL_DEBUG);
    ck_assert_uint_eq(cfg.max_connections, 100);
    ck_assert_uint_eq(cfg.max_connections_per_uid, 7);
    ck_assert_uint_eq(cfg.hello_timeout, 3);
    ck_assert_uint_eq(cfg.hello_idle_timeout, 2);
    ck_assert_uint_eq(cfg.memory_budget, 48u << 20);
}
END_TEST

START_TEST(defaults)
{
    struct config cfg;
    config_defaults(&cfg);
    ck_assert_uint_eq(cfg.max_connections, 1024);
    ck_assert_uint_eq(cfg.max_connections_per_uid, 256);
    ck_assert_uint_eq(cfg.hello_timeout, 10);
    ck_assert_uint_eq(cfg.hello_idle_timeout, 5);
    ck_assert_uint_eq(cfg.memory_budget, 0); /* the smaller of 1 GiB and a quarter of RAM */
}
END_TEST

START_TEST(sizes)
{
    struct config cfg;
    char err[512];
    const struct {
        const char *text;
        size_t bytes;
    } ok[] = {
        {"memory_budget = 16777216\n", 16u << 20},
        {"memory_budget = 20480K\n", 20u << 20},
        {"memory_budget = 2G\n", (size_t)2 << 30},
        {"memory_budget = 1T\n", (size_t)1 << 40},
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        char text[128];
        snprintf(text, sizeof(text), "[peerdistd]\n%s", ok[i].text);
        ck_assert_msg(load(text, &cfg, err, sizeof(err)) == 0, "%s: %s", ok[i].text, err);
        ck_assert_uint_eq(cfg.memory_budget, ok[i].bytes);
    }
    refused("[peerdistd]\nmemory_budget = 1M\n", 2, "memory_budget");
    refused("[peerdistd]\nmemory_budget = 12Q\n", 2, "memory_budget");
    refused("[peerdistd]\nmemory_budget = 99999999999T\n", 2, "memory_budget");
    refused("[peerdistd]\nmax_connections_per_uid = 0\n", 2, "max_connections_per_uid");
    refused("[peerdistd]\nhello_timeout = 0\n", 2, "hello_timeout");
    refused("[peerdistd]\nhello_idle_timeout = 3601\n", 2, "hello_idle_timeout");
}
END_TEST

/* The cache's bounds: cache_size (percent or bytes, at least 64M), max_age, uid_quota. */
START_TEST(cache_keys)
{
    struct config cfg;
    char err[512];
    config_defaults(&cfg);
    ck_assert(cfg.cache_size.percent);
    ck_assert_uint_eq(cfg.cache_size.pct, 5);
    ck_assert_str_eq(cfg.cache_size.text, "5%");
    ck_assert_int_eq(cfg.cache_size.source, CONFIG_SRC_DEFAULT);
    ck_assert_uint_eq(cfg.max_age.seconds, 28ull * 86400);
    ck_assert_str_eq(cfg.max_age.text, "28d");
    ck_assert_int_eq(cfg.max_age.source, CONFIG_SRC_DEFAULT);
    ck_assert_uint_eq(cfg.uid_quota, 0);
    /* A percent resolves against the filesystem of the database's directory (statvfs), never
     * below the minimum. */
    uint64_t lim = config_cache_limit(&cfg.cache_size, "/tmp/x.db");
    ck_assert_uint_ge(lim, CONFIG_CACHE_SIZE_MIN);
    struct statvfs sv;
    ck_assert_int_eq(statvfs("/tmp", &sv), 0);
    uint64_t fs_bytes = (uint64_t)sv.f_blocks * sv.f_frsize;
    struct config_cache_size half = {0};
    ck_assert_int_eq(config_parse_cache_size("50%", &half, err, sizeof(err)), 0);
    uint64_t want = fs_bytes / 100 * 50;
    ck_assert_uint_eq(config_cache_limit(&half, "/tmp/x.db"),
        want < CONFIG_CACHE_SIZE_MIN ? CONFIG_CACHE_SIZE_MIN : want);

    ck_assert_msg(load("[peerdistd]\ncache_size = 512M\nmax_age = 12h\nuid_quota = 1G\n", &cfg, err,
                      sizeof(err)) == 0,
        "%s", err);
    ck_assert(!cfg.cache_size.percent);
    ck_assert_uint_eq(cfg.cache_size.bytes, 512ull << 20);
    ck_assert_str_eq(cfg.cache_size.text, "512M");
    ck_assert_int_eq(cfg.cache_size.source, CONFIG_SRC_FILE);
    ck_assert_uint_eq(config_cache_limit(&cfg.cache_size, "/tmp/x.db"), 512ull << 20);
    ck_assert_uint_eq(cfg.max_age.seconds, 12 * 3600);
    ck_assert_int_eq(cfg.max_age.source, CONFIG_SRC_FILE);
    ck_assert_uint_eq(cfg.uid_quota, 1ull << 30);

    const struct {
        const char *text;
        uint64_t secs;
    } ages[] = {{"3600", 3600}, {"3600s", 3600}, {"90m", 5400}, {"2d", 172800}, {"1h", 3600}};
    for (size_t i = 0; i < sizeof(ages) / sizeof(ages[0]); i++) {
        char text[128];
        snprintf(text, sizeof(text), "[peerdistd]\nmax_age = %s\n", ages[i].text);
        ck_assert_msg(load(text, &cfg, err, sizeof(err)) == 0, "%s: %s", ages[i].text, err);
        ck_assert_uint_eq(cfg.max_age.seconds, ages[i].secs);
    }
    ck_assert_int_eq(load("[peerdistd]\ncache_size = 20G\n", &cfg, err, sizeof(err)), 0);
    ck_assert_uint_eq(cfg.cache_size.bytes, 20ull << 30);
    ck_assert_int_eq(load("[peerdistd]\ncache_size = 67108864\n", &cfg, err, sizeof(err)), 0);
    ck_assert_uint_eq(cfg.cache_size.bytes, 64ull << 20);
    ck_assert_int_eq(load("[peerdistd]\ncache_size = 100%\n", &cfg, err, sizeof(err)), 0);
    ck_assert(cfg.cache_size.percent && cfg.cache_size.pct == 100);
    ck_assert_int_eq(load("[peerdistd]\nuid_quota = 0\n", &cfg, err, sizeof(err)), 0);
    ck_assert_uint_eq(cfg.uid_quota, 0);

    refused("[peerdistd]\ncache_size = 63M\n", 2, "cache_size: '63M' is less than the minimum");
    refused("[peerdistd]\ncache_size = 1000\n", 2, "cache_size");
    refused("[peerdistd]\ncache_size = 0%\n", 2, "cache_size");
    refused("[peerdistd]\ncache_size = 101%\n", 2, "cache_size");
    refused("[peerdistd]\ncache_size = 5.5%\n", 2, "cache_size");
    refused("[peerdistd]\ncache_size = -5%\n", 2, "cache_size");
    refused("[peerdistd]\ncache_size = lots\n", 2, "cache_size");
    refused("[peerdistd]\ncache_size = 20GB\n", 2, "cache_size");
    refused("[peerdistd]\nmax_age = 0\n", 2, "max_age");
    refused("[peerdistd]\nmax_age = 0d\n", 2, "max_age");
    refused("[peerdistd]\nmax_age = -1d\n", 2, "max_age");
    refused("[peerdistd]\nmax_age = 3w\n", 2, "max_age");
    refused("[peerdistd]\nmax_age = 1dd\n", 2, "max_age");
    refused("[peerdistd]\nmax_age = d\n", 2, "max_age");
    refused("[peerdistd]\nmax_age = 99999999999999d\n", 2, "max_age");
    refused("[peerdistd]\nuid_quota = some\n", 2, "uid_quota");
    refused("[peerdistd]\nuid_quota = -1\n", 2, "uid_quota");
}
END_TEST

/* Distributed mode's keys: mode, peer_port, interfaces, ipv4/ipv6, serve, serve_rate_limit. */
START_TEST(distributed_keys)
{
    struct config cfg;
    char err[512];
    config_defaults(&cfg);
    ck_assert_uint_eq(cfg.peer_port, 80);
    ck_assert_str_eq(cfg.interfaces, "");
    ck_assert(cfg.ipv4 && cfg.ipv6 && cfg.serve);
    ck_assert_uint_eq(cfg.serve_rate_limit, 0);
    ck_assert(config_mode_implemented(MODE_DISABLED));
    ck_assert(config_mode_implemented(MODE_LOCAL));
    ck_assert(config_mode_implemented(MODE_DISTRIBUTED));
    ck_assert(!config_mode_implemented(MODE_HOSTED_CLIENT));
    ck_assert(!config_mode_implemented(MODE_HOSTED_SERVER));

    ck_assert_msg(load("[peerdistd]\n"
                       "mode = distributed\n"
                       "peer_port = 8080\n"
                       "interfaces = eth0, br-lan ,wlp2s0\n"
                       "ipv4 = yes\n"
                       "ipv6 = no\n"
                       "serve = no\n"
                       "serve_rate_limit = 10M\n",
                      &cfg, err, sizeof(err)) == 0,
        "%s", err);
    ck_assert_int_eq(cfg.mode, MODE_DISTRIBUTED);
    ck_assert_uint_eq(cfg.peer_port, 8080);
    ck_assert_str_eq(cfg.interfaces, "eth0,br-lan,wlp2s0");
    ck_assert(cfg.ipv4);
    ck_assert(!cfg.ipv6);
    ck_assert(!cfg.serve);
    ck_assert_uint_eq(cfg.serve_rate_limit, 10ull << 20);

    /* Each boolean spelling, and the bounds of the port and the rate. */
    const struct {
        const char *text;
        bool v;
    } bools[] = {{"yes", true}, {"no", false}, {"true", true}, {"false", false}, {"on", true},
        {"off", false}, {"1", true}, {"0", false}, {"YES", true}, {"No", false}};
    for (size_t i = 0; i < sizeof(bools) / sizeof(bools[0]); i++) {
        char text[128];
        snprintf(text, sizeof(text), "[peerdistd]\nserve = %s\nipv4 = %s\n", bools[i].text,
            bools[i].text);
        ck_assert_msg(load(text, &cfg, err, sizeof(err)) == 0, "%s: %s", bools[i].text, err);
        ck_assert_int_eq(cfg.serve, bools[i].v);
        ck_assert_int_eq(cfg.ipv4, bools[i].v);
    }
    ck_assert_int_eq(load("[peerdistd]\npeer_port = 1\n", &cfg, err, sizeof(err)), 0);
    ck_assert_uint_eq(cfg.peer_port, 1);
    ck_assert_int_eq(load("[peerdistd]\npeer_port = 65535\n", &cfg, err, sizeof(err)), 0);
    ck_assert_uint_eq(cfg.peer_port, 65535);
    ck_assert_int_eq(load("[peerdistd]\nserve_rate_limit = 0\n", &cfg, err, sizeof(err)), 0);
    ck_assert_uint_eq(cfg.serve_rate_limit, 0);
    ck_assert_int_eq(load("[peerdistd]\nserve_rate_limit = 125000\n", &cfg, err, sizeof(err)), 0);
    ck_assert_uint_eq(cfg.serve_rate_limit, 125000);
    ck_assert_int_eq(load("[peerdistd]\nserve_rate_limit = 512K\n", &cfg, err, sizeof(err)), 0);
    ck_assert_uint_eq(cfg.serve_rate_limit, 512ull << 10);
    ck_assert_int_eq(load("[peerdistd]\nserve_rate_limit = 1G\n", &cfg, err, sizeof(err)), 0);
    ck_assert_uint_eq(cfg.serve_rate_limit, 1ull << 30);
    /* An empty interfaces value (or only spaces) is every interface; one name alone works. */
    ck_assert_int_eq(load("[peerdistd]\ninterfaces =\n", &cfg, err, sizeof(err)), 0);
    ck_assert_str_eq(cfg.interfaces, "");
    ck_assert_int_eq(load("[peerdistd]\ninterfaces = veth-b\n", &cfg, err, sizeof(err)), 0);
    ck_assert_str_eq(cfg.interfaces, "veth-b");
    ck_assert_int_eq(load("[peerdistd]\ninterfaces = abcdefghijklmno\n", &cfg, err, sizeof(err)),
        0);
    ck_assert_str_eq(cfg.interfaces, "abcdefghijklmno");
    /* One family off is fine in distributed mode; local mode does not care. */
    ck_assert_int_eq(load("[peerdistd]\nmode = distributed\nipv6 = no\n", &cfg, err, sizeof(err)),
        0);
    ck_assert_int_eq(
        load("[peerdistd]\nmode = local\nipv4 = no\nipv6 = no\n", &cfg, err, sizeof(err)), 0);

    refused("[peerdistd]\nmode = hosted-client\npeer_port = 0\n", 3, "peer_port");
    refused("[peerdistd]\npeer_port = 0\n", 2, "peer_port: '0' is not a number in 1..65535");
    refused("[peerdistd]\npeer_port = 65536\n", 2, "peer_port");
    refused("[peerdistd]\npeer_port = -80\n", 2, "peer_port");
    refused("[peerdistd]\npeer_port = http\n", 2, "peer_port");
    refused("[peerdistd]\npeer_port = 80x\n", 2, "peer_port");
    refused("[peerdistd]\npeer_port =\n", 2, "peer_port");
    refused("[peerdistd]\nipv4 = maybe\n", 2, "ipv4: 'maybe' is not yes or no");
    refused("[peerdistd]\nipv6 = 2\n", 2, "ipv6");
    refused("[peerdistd]\nipv6 =\n", 2, "ipv6");
    refused("[peerdistd]\nserve = sometimes\n", 2, "serve: 'sometimes'");
    refused("[peerdistd]\nserve = yess\n", 2, "serve");
    refused("[peerdistd]\nserve_rate_limit = fast\n", 2, "serve_rate_limit");
    refused("[peerdistd]\nserve_rate_limit = -1\n", 2, "serve_rate_limit");
    refused("[peerdistd]\nserve_rate_limit = 10MB\n", 2, "serve_rate_limit");
    refused("[peerdistd]\nserve_rate_limit = 10Mbit\n", 2, "serve_rate_limit");
    refused("[peerdistd]\nserve_rate_limit = 99999999999T\n", 2, "serve_rate_limit");
    refused("[peerdistd]\ninterfaces = eth0,,eth1\n", 2, "interfaces: '' is not an interface");
    refused("[peerdistd]\ninterfaces = eth0,\n", 2, "interfaces");
    refused("[peerdistd]\ninterfaces = ,eth0\n", 2, "interfaces");
    refused("[peerdistd]\ninterfaces = eth0 eth1\n", 2, "interfaces: 'eth0 eth1'");
    refused("[peerdistd]\ninterfaces = eth0:1\n", 2, "interfaces");
    refused("[peerdistd]\ninterfaces = a/b\n", 2, "interfaces");
    refused("[peerdistd]\ninterfaces = ..\n", 2, "interfaces");
    refused("[peerdistd]\ninterfaces = abcdefghijklmnop\n", 2, "interfaces");
    refused("[peerdistd]\ninterfaces = eth0,eth1,eth0\n", 2, "interfaces: 'eth0' is named twice");
    /* Longer than the field: refused, not cut short. */
    char many[600] = "[peerdistd]\ninterfaces = ";
    for (int i = 0; i < 40; i++)
        snprintf(many + strlen(many), sizeof(many) - strlen(many), "%seth%04d", i ? "," : "", i);
    strcat(many, "\n");
    refused(many, 2, "longer than 255 bytes");
    /* Both families off leaves distributed mode without a network. */
    ck_assert_int_eq(
        load("[peerdistd]\nmode = distributed\nipv4 = no\nipv6 = off\n", &cfg, err, sizeof(err)),
        -1);
    ck_assert_msg(strstr(err, "ipv4 and ipv6 are both no"), "%s", err);
    ck_assert_msg(strncmp(err, path, strlen(path)) == 0, "%s", err);
    config_defaults(&cfg);
    cfg.mode = MODE_DISTRIBUTED;
    cfg.ipv4 = cfg.ipv6 = false;
    ck_assert_int_eq(config_check(&cfg, err, sizeof(err)), -1);
    cfg.ipv6 = true;
    ck_assert_int_eq(config_check(&cfg, err, sizeof(err)), 0);
}
END_TEST

static int collect(void *arg, const char *name)
{
    char *out = arg;
    strcat(out, "[");
    strcat(out, name);
    strcat(out, "]");
    return strcmp(name, "stop") == 0 ? 7 : 0;
}

START_TEST(interface_list)
{
    char out[CONFIG_INTERFACES_MAX], why[200], seen[512];
    ck_assert_int_eq(config_parse_interfaces(" a , bb,ccc ", out, sizeof(out), why, sizeof(why)),
        0);
    ck_assert_str_eq(out, "a,bb,ccc");
    seen[0] = '\0';
    ck_assert_int_eq(config_each_interface(out, collect, seen), 0);
    ck_assert_str_eq(seen, "[a][bb][ccc]");
    seen[0] = '\0';
    ck_assert_int_eq(config_each_interface("", collect, seen), 0);
    ck_assert_str_eq(seen, "");
    seen[0] = '\0';
    ck_assert_int_eq(config_each_interface("x,stop,y", collect, seen), 7);
    ck_assert_str_eq(seen, "[x][stop]");
    /* Too small an output is refused, never cut. */
    ck_assert_int_eq(config_parse_interfaces("eth0,eth1", out, 6, why, sizeof(why)), -1);
    bool b = true;
    ck_assert_int_eq(config_parse_bool("off", &b), 0);
    ck_assert(!b);
    ck_assert_int_eq(config_parse_bool("", &b), -1);
    ck_assert_int_eq(config_parse_bool("yes please", &b), -1);
}
END_TEST

/* The mistakes, each reported at its own line, saying what is wrong. */
START_TEST(mistakes_name_their_line)
{
    refused("[peerdistd\nmode = local\n", 1, "']'");
    refused("mode = local\n[peerdistd]\n", 1, "before");
    refused("[peerdistd]\nmode = local\n[other]\nmode = local\n", 3, "unknown section [other]");
    refused("[peerdistd]\n\n# comment\nfrobnicate = 1\n", 4, "unknown key 'frobnicate'");
    refused("[peerdistd]\nmode = local\njust words\n", 3, "key = value");
    refused("[peerdistd]\nsocket = /run/a\n  /continued\n", 3, "continu");
    refused("[peerdistd]\nmode = sideways\nlog_level = loud\n", 2, "mode");
}
END_TEST

/* A path longer than libinih's 199-character line works, and stays whole. */
START_TEST(long_lines_work)
{
    char value[1200] = "/var/cache/";
    while (strlen(value) < 1000)
        strcat(value, "a-rather-long-directory-name/");
    strcat(value, "cache.db");
    char text[1400];
    snprintf(text, sizeof(text),
        "[peerdistd]\ndatabase = %s   ; an inline comment\nmode = disabled\n", value);
    struct config cfg;
    char err[512];
    ck_assert_msg(load(text, &cfg, err, sizeof(err)) == 0, "%s", err);
    ck_assert_str_eq(cfg.db_path, value);
    ck_assert_int_eq(cfg.mode, MODE_DISABLED);
    /* Past PATH_MAX it is refused, at its line, saying so. */
    char *huge = malloc(PATH_MAX + 100);
    memset(huge, 'b', PATH_MAX + 50);
    memcpy(huge, "[peerdistd]\nstate_dir = /", 25);
    strcpy(huge + PATH_MAX + 50, "\n");
    refused(huge, 2, "state_dir");
    free(huge);
    /* A long section line, comment, or line without '=' is judged as a short one. */
    char longsec[400] = "[peerdistd";
    memset(longsec + strlen(longsec), 'x', 300);
    strcpy(longsec + 310, "]\nmode = local\n");
    refused(longsec, 1, "unknown section");
    char longcomment[400] = "[peerdistd]\n# ";
    memset(longcomment + strlen(longcomment), 'c', 300);
    strcpy(longcomment + 314, "\nmode = disabled\n");
    ck_assert_msg(load(longcomment, &cfg, err, sizeof(err)) == 0, "%s", err);
    ck_assert_int_eq(cfg.mode, MODE_DISABLED);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("config");
    TCase *tc = tcase_create("config");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, every_key);
    tcase_add_test(tc, defaults);
    tcase_add_test(tc, sizes);
    tcase_add_test(tc, cache_keys);
    tcase_add_test(tc, distributed_keys);
    tcase_add_test(tc, interface_list);
    tcase_add_test(tc, mistakes_name_their_line);
    tcase_add_test(tc, long_lines_work);
    suite_add_tcase(s, tc);
    return check_run(s);
}
