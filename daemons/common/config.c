/*
 * "key = value" config files: see config.h.
 */

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "log.h"


#define CONF_LINE_MAX  4096


static int conf_parse_value(char *p, char **value);
static const conf_def_t *conf_find(const conf_def_t *defs, const char *key,
    size_t *index);


static const conf_def_t *
conf_find(const conf_def_t *defs, const char *key, size_t *index)
{
    size_t  i;

    for (i = 0; defs[i].key != NULL; i++) {
        if (strcmp(defs[i].key, key) == 0) {
            *index = i;
            return &defs[i];
        }
    }

    return NULL;
}


/* unquotes/trims the value in place; 0 or -1 (bad quoting) */
static int
conf_parse_value(char *p, char **value)
{
    char  *out, *end;

    while (*p == ' ' || *p == '\t') {
        p++;
    }

    if (*p == '"') {
        out = ++p;
        *value = out;

        for ( ;; ) {
            if (*p == '\0') {
                return -1;
            }

            if (*p == '"') {
                p++;
                break;
            }

            if (*p == '\\' && (p[1] == '"' || p[1] == '\\')) {
                p++;
            }

            *out++ = *p++;
        }

        *out = '\0';

        while (*p == ' ' || *p == '\t') {
            p++;
        }

        return (*p == '\0' || *p == '#') ? 0 : -1;
    }

    *value = p;

    for (end = p; *end != '\0'; end++) {
        if (*end == '#' && end > p && (end[-1] == ' ' || end[-1] == '\t')) {
            break;
        }
    }

    *end = '\0';

    while (end > p && (end[-1] == ' ' || end[-1] == '\t')) {
        *--end = '\0';
    }

    return 0;
}


int
conf_load(const char *path, const conf_def_t *defs, void *dst)
{
    int                 lineno, rc, c;
    char                line[CONF_LINE_MAX], *p, *key, *value, *end, *s;
    long                v;
    FILE               *f;
    size_t              i, len, nseen;
    unsigned char      *seen;
    const conf_def_t   *d;

    for (nseen = 0; defs[nseen].key != NULL; nseen++) {
        d = &defs[nseen];

        if (d->type == CONF_STRING) {
            s = NULL;
            if (d->def_str != NULL && (s = strdup(d->def_str)) == NULL) {
                log_warn("strdup");
                return -1;
            }
            *(char **) ((char *) dst + d->offset) = s;

        } else {
            *(long *) ((char *) dst + d->offset) = d->def_int;
        }
    }

    seen = calloc(nseen + 1, 1);
    if (seen == NULL) {
        log_warn("calloc");
        return -1;
    }

    f = fopen(path, "r");
    if (f == NULL) {
        log_warn("%s", path);
        free(seen);
        return -1;
    }

    rc = -1;
    lineno = 0;

    while (fgets(line, sizeof(line), f) != NULL) {
        lineno++;
        len = strlen(line);

        if (len == sizeof(line) - 1 && line[len - 1] != '\n') {
            log_warnx("%s:%d: line too long", path, lineno);
            /* skip the rest of it */
            while ((c = fgetc(f)) != EOF && c != '\n') { /* void */ }
            goto done;
        }

        while (len > 0 && isspace((unsigned char) line[len - 1])) {
            line[--len] = '\0';
        }

        p = line;
        while (*p == ' ' || *p == '\t') {
            p++;
        }

        if (*p == '\0' || *p == '#') {
            continue;
        }

        key = p;
        while (*p == '_' || isalnum((unsigned char) *p)) {
            p++;
        }

        end = p;
        while (*p == ' ' || *p == '\t') {
            p++;
        }

        if (end == key || *p != '=') {
            log_warnx("%s:%d: expected \"key = value\"", path, lineno);
            goto done;
        }

        *end = '\0';

        if (conf_parse_value(p + 1, &value) != 0) {
            log_warnx("%s:%d: bad quoting in the value of \"%s\"",
                      path, lineno, key);
            goto done;
        }

        d = conf_find(defs, key, &i);
        if (d == NULL) {
            log_warnx("%s:%d: unknown key \"%s\"", path, lineno, key);
            goto done;
        }

        if (seen[i]) {
            log_warnx("%s:%d: duplicate key \"%s\"", path, lineno, key);
            goto done;
        }

        seen[i] = 1;

        if (*value == '\0') {
            log_warnx("%s:%d: empty value for \"%s\"", path, lineno, key);
            goto done;
        }

        if (d->type == CONF_STRING) {
            s = strdup(value);
            if (s == NULL) {
                log_warn("strdup");
                goto done;
            }
            free(*(char **) ((char *) dst + d->offset));
            *(char **) ((char *) dst + d->offset) = s;
            continue;
        }

        errno = 0;
        v = strtol(value, &end, 10);

        if (errno != 0 || end == value || *end != '\0'
            || v < d->min || v > d->max)
        {
            log_warnx("%s:%d: \"%s\" must be an integer from %ld to %ld",
                      path, lineno, key, d->min, d->max);
            goto done;
        }

        *(long *) ((char *) dst + d->offset) = v;
    }

    if (ferror(f)) {
        log_warn("%s", path);
        goto done;
    }

    for (i = 0; defs[i].key != NULL; i++) {
        if (defs[i].required && !seen[i]) {
            log_warnx("%s: missing required key \"%s\"", path,
                      defs[i].key);
            goto done;
        }
    }

    rc = 0;

done:

    fclose(f);
    free(seen);

    return rc;
}


void
conf_free(const conf_def_t *defs, void *dst)
{
    size_t   i;
    char   **s;

    for (i = 0; defs[i].key != NULL; i++) {
        if (defs[i].type == CONF_STRING) {
            s = (char **) ((char *) dst + defs[i].offset);
            free(*s);
            *s = NULL;
        }
    }
}
