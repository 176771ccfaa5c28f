#include "CHTTPServerShim.h"

#include <microhttpd.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

struct at_http_daemon {
    struct MHD_Daemon *daemon;
    at_http_handler handler;
    void *context;
    size_t max_body_bytes;
    unsigned short port;
};

// The state of one request while libmicrohttpd delivers its body in pieces.
typedef struct request_state {
    unsigned char *body;
    size_t length;
    size_t capacity;
    int too_large;
} request_state;

typedef struct pair_list {
    at_http_pair *items;
    size_t count;
    size_t capacity;
} pair_list;

static enum MHD_Result collect_pair(void *cls, enum MHD_ValueKind kind, const char *key, const char *value) {
    (void)kind;
    pair_list *list = cls;
    if (list->count == list->capacity) {
        size_t capacity = list->capacity == 0 ? 16 : list->capacity * 2;
        at_http_pair *items = realloc(list->items, capacity * sizeof(at_http_pair));
        if (items == NULL) {
            return MHD_NO;
        }
        list->items = items;
        list->capacity = capacity;
    }
    list->items[list->count].name = key;
    list->items[list->count].value = value != NULL ? value : "";
    list->count += 1;
    return MHD_YES;
}

static void add_headers(struct MHD_Response *response, char *lines) {
    char *line = lines;
    while (line != NULL && *line != '\0') {
        char *end = strchr(line, '\n');
        if (end != NULL) {
            *end = '\0';
        }
        char *colon = strchr(line, ':');
        if (colon != NULL) {
            *colon = '\0';
            const char *value = colon + 1;
            while (*value == ' ') {
                value++;
            }
            MHD_add_response_header(response, line, value);
        }
        line = end != NULL ? end + 1 : NULL;
    }
}

static enum MHD_Result handle(
    void *cls, struct MHD_Connection *connection, const char *url, const char *method, const char *version,
    const char *upload_data, size_t *upload_data_size, void **con_cls) {
    (void)version;
    at_http_daemon *server = cls;
    request_state *state = *con_cls;
    if (state == NULL) {
        state = calloc(1, sizeof(request_state));
        if (state == NULL) {
            return MHD_NO;
        }
        *con_cls = state;
        return MHD_YES;
    }

    if (*upload_data_size > 0) {
        size_t incoming = *upload_data_size;
        if (!state->too_large && state->length + incoming > server->max_body_bytes) {
            state->too_large = 1;
            free(state->body);
            state->body = NULL;
            state->length = 0;
        }
        if (!state->too_large) {
            if (state->length + incoming > state->capacity) {
                size_t capacity = state->capacity == 0 ? 4096 : state->capacity;
                while (capacity < state->length + incoming) {
                    capacity *= 2;
                }
                unsigned char *body = realloc(state->body, capacity);
                if (body == NULL) {
                    return MHD_NO;
                }
                state->body = body;
                state->capacity = capacity;
            }
            memcpy(state->body + state->length, upload_data, incoming);
            state->length += incoming;
        }
        *upload_data_size = 0;
        return MHD_YES;
    }

    pair_list headers = {0};
    pair_list query = {0};
    MHD_get_connection_values(connection, MHD_HEADER_KIND, collect_pair, &headers);
    MHD_get_connection_values(connection, MHD_GET_ARGUMENT_KIND, collect_pair, &query);

    at_http_request request = {
        .method = method,
        .path = url,
        .headers = headers.items,
        .header_count = headers.count,
        .query = query.items,
        .query_count = query.count,
        .body = state->body,
        .body_length = state->length,
        .body_too_large = state->too_large,
    };
    at_http_response reply = {0};
    server->handler(server->context, &request, &reply);
    free(headers.items);
    free(query.items);

    struct MHD_Response *response = MHD_create_response_from_buffer(
        reply.body_length, reply.body, reply.body != NULL ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
    if (response == NULL) {
        free(reply.body);
        free(reply.headers);
        return MHD_NO;
    }
    add_headers(response, reply.headers);
    free(reply.headers);
    enum MHD_Result result = MHD_queue_response(connection, reply.status, response);
    MHD_destroy_response(response);
    return result;
}

static void completed(void *cls, struct MHD_Connection *connection, void **con_cls, enum MHD_RequestTerminationCode code) {
    (void)cls;
    (void)connection;
    (void)code;
    request_state *state = *con_cls;
    if (state != NULL) {
        free(state->body);
        free(state);
        *con_cls = NULL;
    }
}

at_http_daemon *at_http_start(
    const char *host, unsigned short port, unsigned int threads, unsigned int connection_limit,
    unsigned int connection_timeout_secs, size_t max_body_bytes, at_http_handler handler, void *context,
    char *error, size_t error_size) {
    struct addrinfo hints = {0};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    char service[8];
    snprintf(service, sizeof(service), "%u", (unsigned int)port);
    struct addrinfo *address = NULL;
    int lookup = getaddrinfo(host, service, &hints, &address);
    if (lookup != 0 || address == NULL) {
        snprintf(error, error_size, "cannot resolve listen host \"%s\": %s", host, gai_strerror(lookup));
        return NULL;
    }

    at_http_daemon *server = calloc(1, sizeof(at_http_daemon));
    if (server == NULL) {
        freeaddrinfo(address);
        snprintf(error, error_size, "out of memory");
        return NULL;
    }
    server->handler = handler;
    server->context = context;
    server->max_body_bytes = max_body_bytes;

    unsigned int flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL;
    if (address->ai_family == AF_INET6) {
        flags |= MHD_USE_IPv6;
    }
    server->daemon = MHD_start_daemon(
        flags, port, NULL, NULL, handle, server,
        MHD_OPTION_SOCK_ADDR, address->ai_addr,
        MHD_OPTION_THREAD_POOL_SIZE, threads,
        MHD_OPTION_CONNECTION_LIMIT, connection_limit,
        MHD_OPTION_CONNECTION_TIMEOUT, connection_timeout_secs,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(64 * 1024),
        MHD_OPTION_NOTIFY_COMPLETED, completed, NULL,
        MHD_OPTION_END);
    freeaddrinfo(address);
    if (server->daemon == NULL) {
        snprintf(error, error_size, "cannot listen on %s:%u (is the address in use or not on this machine?)", host,
                 (unsigned int)port);
        free(server);
        return NULL;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(server->daemon, MHD_DAEMON_INFO_BIND_PORT);
    server->port = info != NULL ? info->port : port;
    return server;
}

unsigned short at_http_port(const at_http_daemon *server) {
    return server->port;
}

void at_http_stop(at_http_daemon *server) {
    if (server == NULL) {
        return;
    }
    MHD_stop_daemon(server->daemon);
    free(server);
}
