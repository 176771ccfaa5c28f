#ifndef ACTION_TRIGGERS_CHTTPSERVERSHIM_H
#define ACTION_TRIGGERS_CHTTPSERVERSHIM_H

#include <stddef.h>

// A small layer over libmicrohttpd: it starts the daemon (MHD_start_daemon is
// variadic, which Swift cannot call), assembles each request with its headers,
// query arguments and body, and hands it to one handler that fills a response.

typedef struct at_http_pair {
    const char *name;
    const char *value;
} at_http_pair;

typedef struct at_http_request {
    const char *method;
    const char *path;
    const at_http_pair *headers;
    size_t header_count;
    const at_http_pair *query;
    size_t query_count;
    const unsigned char *body;
    size_t body_length;
    /// Set when the body was longer than the server's limit; `body` is then empty.
    int body_too_large;
} at_http_request;

typedef struct at_http_response {
    unsigned int status;
    /// Allocated with malloc by the handler; the server frees it.
    unsigned char *body;
    size_t body_length;
    /// "Name: value\n" lines, allocated with malloc by the handler; the server frees it.
    char *headers;
} at_http_response;

typedef void (*at_http_handler)(void *context, const at_http_request *request, at_http_response *response);

typedef struct at_http_daemon at_http_daemon;

/// Starts a server on host:port (port 0 picks a free one) with a thread pool.
/// Returns NULL and writes a message to `error` when it cannot start.
at_http_daemon *at_http_start(
    const char *host, unsigned short port, unsigned int threads, unsigned int connection_limit,
    unsigned int connection_timeout_secs, size_t max_body_bytes, at_http_handler handler, void *context,
    char *error, size_t error_size);

/// Returns the port the server listens on.
unsigned short at_http_port(const at_http_daemon *daemon);

/// Stops accepting, waits for running handlers, and frees the server.
void at_http_stop(at_http_daemon *daemon);

#endif
