/*
 * Daemon config files: "key = value" lines.
 *
 *   # a comment line
 *   db = host=/run/postgresql dbname=media      # trailing comment
 *   listen = "tcp://127.0.0.1:8081"
 *
 * Values run to the end of the line (a '#' after whitespace starts a
 * comment); a value in double quotes keeps '#' and surrounding spaces and
 * understands \" and \\. Keys are described by a table (like nginx's
 * ngx_command_t): the type, where the value goes (offsetof into the caller's
 * struct) and limits. Every error is logged as "file:line: reason".
 */

#ifndef MEDIA_CONFIG_H
#define MEDIA_CONFIG_H

#include <stddef.h>


typedef enum {
    CONF_STRING,        /* char *, malloc'd; conf_free() releases it */
    CONF_INT            /* long, within [min, max] */
} conf_type_t;


typedef struct {
    const char   *key;
    conf_type_t   type;
    size_t        offset;
    int           required;
    const char   *def_str;      /* CONF_STRING default, may be NULL */
    long          def_int;      /* CONF_INT default */
    long          min;
    long          max;
} conf_def_t;


/* a table ends with { NULL } */

/* sets the defaults, then reads path into dst; 0 or -1 (logged) */
int conf_load(const char *path, const conf_def_t *defs, void *dst);

/* frees the CONF_STRING members of dst */
void conf_free(const conf_def_t *defs, void *dst);


#endif /* MEDIA_CONFIG_H */
