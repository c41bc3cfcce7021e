
/*
 * ngx_media: the origin hop, so that a cached slice's body starts on a
 * page boundary of its cache file.
 *
 * proxy_cache stores a response as [its own header][the upstream's header,
 * as received][body], so the body starts wherever the origin's header
 * happens to end (byte 639 for the bench's MP3). sendfile then hands the
 * socket pages of which every one spans two pages of the file, and a
 * reader on the same host (a local TLS terminator or proxy; the bench's
 * wrk) pays for that when it copies: about a fifth more CPU per byte on
 * loopback than for the same bytes page-aligned (bench/run prints each
 * cache file's body offset; docs/directives.md). The extra cost is the
 * reader's copy, so a remote client should not see it (not measured).
 *
 * So the stream location does not fetch from the origin itself: it
 * proxies to a server of this nginx on a unix socket (conf/nginx.conf.in),
 * whose location has "media_origin_hop". That server proxies to the
 * origin and, in its header filter, pads the response header it is about
 * to send with an "X-Media-Pad" line, so that the cache file's header
 * (which the stream side told it the length of) plus this header end on a
 * page boundary. The stream location hides X-Media-Pad from clients.
 *
 * The stream side sends "X-Media-Hop: <key> <header_start> <host> <url>":
 *
 *   key           an HMAC of a fixed string with the first media_sign_key:
 *                 the same in every worker and after a reload, unknown to
 *                 anyone else who can reach the socket, so the hop is not
 *                 an open proxy (nor a way around the stream's auth);
 *   header_start  r->cache->header_start of the slice being fetched;
 *   host, url     $media_origin_host, $media_origin_url: the origin's Host
 *                 and its URL with the address the stream side resolved
 *                 and checked.
 *
 * The hop answers a missing or wrong X-Media-Hop with 403 (JSON).
 */

#include "ngx_http_media.h"

#include <openssl/crypto.h>


#define NGX_HTTP_MEDIA_HOP_HEADER    "X-Media-Hop"
#define NGX_HTTP_MEDIA_HOP_CONTEXT   "ngx_media origin hop"
#define NGX_HTTP_MEDIA_HOP_PAD       "X-Media-Pad: "
/* the shortest pad line: the name and CRLF */
#define NGX_HTTP_MEDIA_HOP_PAD_MIN   (sizeof(NGX_HTTP_MEDIA_HOP_PAD) - 1 + 2)
/* body_start of a cache file is a u_short */
#define NGX_HTTP_MEDIA_HOP_BODY_MAX  65535


typedef struct {
    ngx_str_t    key;
    ngx_uint_t   header_start;
    ngx_str_t    host;
    ngx_str_t    url;
} ngx_http_media_hop_t;


static ngx_int_t ngx_http_media_hop_parse(ngx_http_request_t *r,
    ngx_http_media_hop_t *hop);
static ngx_int_t ngx_http_media_hop_header_filter(ngx_http_request_t *r);
static void ngx_http_media_hop_pad(ngx_http_request_t *r,
    ngx_uint_t header_start);
static ngx_int_t ngx_http_media_hop_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_media_hop_request_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);


static ngx_http_output_header_filter_pt  ngx_http_next_header_filter;


ngx_http_variable_t  ngx_http_media_hop_vars[] = {

    /* the stream side: the X-Media-Hop value for this fetch */
    { ngx_string("media_hop"), NULL, ngx_http_media_hop_request_variable, 0,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    /* the hop side: the origin's URL and Host from X-Media-Hop */
    { ngx_string("media_hop_url"), NULL, ngx_http_media_hop_variable, 0,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("media_hop_host"), NULL, ngx_http_media_hop_variable, 1,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

      ngx_http_null_variable
};


/*
 * Postconfiguration: the key, from the first signing key (if any location
 * uses the hop or $media_hop, there must be one), and the header filter.
 */
ngx_int_t
ngx_http_media_hop_init(ngx_conf_t *cf)
{
    mm_sign_key_t               *keys;
    ngx_http_media_main_conf_t  *mcf;

    mcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_media_module);

    if (mcf->sign_keys != NULL && mcf->sign_keys != NGX_CONF_UNSET_PTR
        && mcf->sign_keys->nelts)
    {
        keys = mcf->sign_keys->elts;

        if (mm_sign_make(&keys[0], NGX_HTTP_MEDIA_HOP_CONTEXT,
                         sizeof(NGX_HTTP_MEDIA_HOP_CONTEXT) - 1, 0,
                         mcf->hop_key, sizeof(mcf->hop_key))
            != MM_OK)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "cannot derive the origin hop's key");
            return NGX_ERROR;
        }

    } else if (mcf->hop_used) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"media_origin_hop\" needs a \"media_sign_key\" "
                           "(the hop's key is derived from it)");
        return NGX_ERROR;
    }

    ngx_http_next_header_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = ngx_http_media_hop_header_filter;

    return NGX_OK;
}


char *
ngx_http_media_origin_hop(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_media_loc_conf_t  *lcf = conf;

    ngx_http_media_main_conf_t  *mcf;

    if (lcf->origin_hop) {
        return "is duplicate";
    }

    if (lcf->route != NGX_HTTP_MEDIA_ROUTE_OTHER) {
        return "cannot share a location with another media handler";
    }

    mcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_media_module);
    mcf->hop_used = 1;

    lcf->origin_hop = 1;

    return NGX_CONF_OK;
}


/*
 * X-Media-Hop of r: "<key> <header_start> <host> <url>". NGX_DECLINED when
 * there is none, NGX_ERROR when it is malformed; the key is not checked.
 */
static ngx_int_t
ngx_http_media_hop_parse(ngx_http_request_t *r, ngx_http_media_hop_t *hop)
{
    u_char           *p, *last, *sp;
    ngx_int_t         start;
    ngx_str_t         f[3];
    ngx_uint_t        i, n;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h, *found;

    found = NULL;
    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].key.len == sizeof(NGX_HTTP_MEDIA_HOP_HEADER) - 1
            && ngx_strncasecmp(h[i].key.data,
                               (u_char *) NGX_HTTP_MEDIA_HOP_HEADER,
                               h[i].key.len) == 0)
        {
            if (found) {
                return NGX_ERROR;           /* more than one */
            }

            found = &h[i];
        }
    }

    if (found == NULL) {
        return NGX_DECLINED;
    }

    p = found->value.data;
    last = p + found->value.len;

    for (n = 0; n < 3; n++) {
        sp = ngx_strlchr(p, last, ' ');
        if (sp == NULL || sp == p) {
            return NGX_ERROR;
        }

        f[n].data = p;
        f[n].len = sp - p;
        p = sp + 1;
    }

    hop->key = f[0];
    hop->host = f[2];
    hop->url.data = p;
    hop->url.len = last - p;

    /* digits only (ngx_atoi), at most 5 of them, so no overflow */
    start = f[1].len > 5 ? NGX_ERROR : ngx_atoi(f[1].data, f[1].len);

    if (start == NGX_ERROR || start > NGX_HTTP_MEDIA_HOP_BODY_MAX
        || ngx_strlchr(hop->url.data, last, ' ') != NULL)
    {
        return NGX_ERROR;
    }

    hop->header_start = start;

    if (!(hop->url.len > sizeof("http://") - 1
          && ngx_strncmp(hop->url.data, "http://", 7) == 0)
        && !(hop->url.len > sizeof("https://") - 1
             && ngx_strncmp(hop->url.data, "https://", 8) == 0))
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* the hop's access phase: only this nginx's stream side may use it */
ngx_int_t
ngx_http_media_hop_access(ngx_http_request_t *r)
{
    ngx_int_t                    rc;
    ngx_http_media_hop_t         hop;
    ngx_http_media_loc_conf_t   *lcf;
    ngx_http_media_main_conf_t  *mcf;

    lcf = ngx_http_get_module_loc_conf(r, ngx_http_media_module);

    if (!lcf->origin_hop || r != r->main) {
        return NGX_DECLINED;
    }

    mcf = ngx_http_get_module_main_conf(r, ngx_http_media_module);

    rc = ngx_http_media_hop_parse(r, &hop);

    if (rc == NGX_OK
        && hop.key.len == MM_SIGN_SIG_LEN
        && CRYPTO_memcmp(hop.key.data, mcf->hop_key, MM_SIGN_SIG_LEN) == 0)
    {
        return NGX_DECLINED;
    }

    ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                  "media origin hop: %s X-Media-Hop, refused",
                  rc == NGX_DECLINED ? "no" : rc == NGX_ERROR ? "malformed"
                                                              : "wrong key in");

    rc = ngx_http_media_send_error(r, NGX_HTTP_FORBIDDEN, "forbidden",
                                   "this is nginx's own origin hop");
    ngx_http_finalize_request(r, rc);

    return NGX_DONE;
}


static ngx_int_t
ngx_http_media_hop_header_filter(ngx_http_request_t *r)
{
    ngx_int_t                   rc;
    ngx_http_media_hop_t        hop;
    ngx_http_media_loc_conf_t  *lcf;

    lcf = ngx_http_get_module_loc_conf(r, ngx_http_media_module);

    if (!lcf->origin_hop || r != r->main
        || ngx_http_media_hop_parse(r, &hop) != NGX_OK)
    {
        return ngx_http_next_header_filter(r);
    }

    rc = ngx_http_next_header_filter(r);

    if (rc != NGX_ERROR) {
        ngx_http_media_hop_pad(r, hop.header_start);
    }

    return rc;
}


/*
 * The header nginx's header filter has just written is still in r->out,
 * unsent (a header is shorter than postpone_output, and this response has
 * a body to come): it gets, before its blank line, a pad line that makes
 * header_start + its length a multiple of the page size. Anything else in
 * r->out, and the header is left as it is (the cache file is then only
 * unaligned).
 */
static void
ngx_http_media_hop_pad(ngx_http_request_t *r, ngx_uint_t header_start)
{
    u_char     *p;
    size_t      len, pad;
    ngx_buf_t  *b;

    if (r->out == NULL || r->out->buf == NULL) {
        goto skipped;
    }

    b = r->out->buf;
    len = b->last - b->pos;

    if (!b->temporary || b->in_file || b->pos != b->start || len < 16
        || ngx_strncmp(b->pos, "HTTP/", 5) != 0
        || ngx_strncmp(b->last - 4, CRLF CRLF, 4) != 0)
    {
        goto skipped;
    }

    pad = (ngx_pagesize - (header_start + len) % ngx_pagesize) % ngx_pagesize;

    if (pad < NGX_HTTP_MEDIA_HOP_PAD_MIN) {
        pad += ngx_pagesize;
    }

    if (header_start + len + pad > NGX_HTTP_MEDIA_HOP_BODY_MAX) {
        goto skipped;
    }

    p = ngx_pnalloc(r->pool, len + pad);
    if (p == NULL) {
        goto skipped;
    }

    b->start = p;

    p = ngx_cpymem(p, b->pos, len - 2);
    p = ngx_cpymem(p, NGX_HTTP_MEDIA_HOP_PAD,
                   sizeof(NGX_HTTP_MEDIA_HOP_PAD) - 1);
    ngx_memset(p, 'x', pad - NGX_HTTP_MEDIA_HOP_PAD_MIN);
    p += pad - NGX_HTTP_MEDIA_HOP_PAD_MIN;
    p = ngx_cpymem(p, CRLF CRLF, 4);

    b->pos = b->start;
    b->last = p;
    b->end = p;

    r->header_size += pad;

    return;

skipped:

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "media origin hop: response header not padded");
}


/* $media_hop_url, $media_hop_host: the hop side */
static ngx_int_t
ngx_http_media_hop_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_http_media_hop_t  hop;

    if (ngx_http_media_hop_parse(r->main, &hop) != NGX_OK) {
        v->not_found = 1;
        return NGX_OK;
    }

    v->data = data ? hop.host.data : hop.url.data;
    v->len = data ? hop.host.len : hop.url.len;
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;

    return NGX_OK;
}


/* $media_hop: the stream side, evaluated for each fetch (a slice's) */
static ngx_int_t
ngx_http_media_hop_request_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    u_char                       *p;
    size_t                        len;
    ngx_uint_t                    header_start;
    ngx_http_media_main_conf_t   *mcf;
    ngx_http_media_stream_ctx_t  *ctx;

    mcf = ngx_http_get_module_main_conf(r, ngx_http_media_module);
    ctx = ngx_http_media_stream_ctx(r);

    if (ctx == NULL || ctx->origin_url.len == 0 || ctx->origin_host.len == 0
        || mcf->hop_key[0] == '\0')
    {
        v->not_found = 1;
        return NGX_OK;
    }

    header_start = 0;

#if (NGX_HTTP_CACHE)
    if (r->cache) {
        header_start = r->cache->header_start;
    }
#endif

    len = MM_SIGN_SIG_LEN + 1 + NGX_INT_T_LEN + 1 + ctx->origin_host.len + 1
          + ctx->origin_url.len;

    p = ngx_pnalloc(r->pool, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    v->data = p;
    v->len = ngx_sprintf(p, "%s %ui %V %V", mcf->hop_key, header_start,
                         &ctx->origin_host, &ctx->origin_url)
             - p;
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;

    return NGX_OK;
}
