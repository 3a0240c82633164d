/* SPDX-License-Identifier: MIT */
/*
 * schema.h - the SQL migrations embedded from schema/NNN_*.sql. Migration n
 * takes the database from user_version n-1 to n.
 */
#ifndef PEERDIST_SCHEMA_H
#define PEERDIST_SCHEMA_H

struct schema_migration {
    int version;
    const char *name;
    const char *sql;
};

extern const struct schema_migration schema_migrations[];
extern const int schema_migration_count;

#endif
