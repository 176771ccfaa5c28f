// A small C layer over rabbitmq-c: amqp_login is variadic, which Swift cannot call,
// and publisher confirms need frame-level handling of unions and macros.
#include "CRabbitMQShim.h"

#include <amqp.h>
#include <amqp_tcp_socket.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

struct at_amqp_connection {
    amqp_connection_state_t state;
    uint64_t next_delivery_tag;
};

static void set_error(char *error, size_t size, const char *format, const char *detail) {
    if (error != NULL && size > 0) {
        snprintf(error, size, format, detail);
    }
}

static const char *reply_text(amqp_rpc_reply_t reply) {
    static __thread char text[256];
    switch (reply.reply_type) {
    case AMQP_RESPONSE_NORMAL:
        return "no error";
    case AMQP_RESPONSE_NONE:
        return "missing reply";
    case AMQP_RESPONSE_LIBRARY_EXCEPTION:
        return amqp_error_string2(reply.library_error);
    case AMQP_RESPONSE_SERVER_EXCEPTION:
        if (reply.reply.id == AMQP_CONNECTION_CLOSE_METHOD) {
            amqp_connection_close_t *close = (amqp_connection_close_t *)reply.reply.decoded;
            snprintf(text, sizeof text, "connection closed by the broker: %d %.*s", close->reply_code,
                     (int)close->reply_text.len, (char *)close->reply_text.bytes);
            return text;
        }
        if (reply.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
            amqp_channel_close_t *close = (amqp_channel_close_t *)reply.reply.decoded;
            snprintf(text, sizeof text, "channel closed by the broker: %d %.*s", close->reply_code,
                     (int)close->reply_text.len, (char *)close->reply_text.bytes);
            return text;
        }
        return "unexpected broker method";
    }
    return "unknown reply";
}

static struct timeval timeout_of(int timeout_ms) {
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    return tv;
}

at_amqp_connection *at_amqp_connect(const char *host, int port, const char *vhost, const char *username,
                                    const char *password, int timeout_ms, char *error, size_t error_size) {
    amqp_connection_state_t state = amqp_new_connection();
    if (state == NULL) {
        set_error(error, error_size, "%s", "out of memory");
        return NULL;
    }
    amqp_socket_t *socket = amqp_tcp_socket_new(state);
    if (socket == NULL) {
        amqp_destroy_connection(state);
        set_error(error, error_size, "%s", "could not create a socket");
        return NULL;
    }
    struct timeval timeout = timeout_of(timeout_ms);
    int status = amqp_socket_open_noblock(socket, host, port, &timeout);
    if (status != AMQP_STATUS_OK) {
        set_error(error, error_size, "connect failed: %s", amqp_error_string2(status));
        amqp_destroy_connection(state);
        return NULL;
    }
    amqp_set_handshake_timeout(state, &timeout);
    amqp_set_rpc_timeout(state, &timeout);

    amqp_rpc_reply_t reply = amqp_login(state, vhost, 0, AMQP_DEFAULT_FRAME_SIZE, 0, AMQP_SASL_METHOD_PLAIN,
                                        username, password);
    if (reply.reply_type != AMQP_RESPONSE_NORMAL) {
        set_error(error, error_size, "login failed: %s", reply_text(reply));
        amqp_destroy_connection(state);
        return NULL;
    }
    amqp_channel_open(state, 1);
    reply = amqp_get_rpc_reply(state);
    if (reply.reply_type != AMQP_RESPONSE_NORMAL) {
        set_error(error, error_size, "opening a channel failed: %s", reply_text(reply));
        amqp_connection_close(state, AMQP_REPLY_SUCCESS);
        amqp_destroy_connection(state);
        return NULL;
    }
    amqp_confirm_select(state, 1);
    reply = amqp_get_rpc_reply(state);
    if (reply.reply_type != AMQP_RESPONSE_NORMAL) {
        set_error(error, error_size, "enabling publisher confirms failed: %s", reply_text(reply));
        amqp_connection_close(state, AMQP_REPLY_SUCCESS);
        amqp_destroy_connection(state);
        return NULL;
    }

    at_amqp_connection *connection = calloc(1, sizeof *connection);
    if (connection == NULL) {
        amqp_connection_close(state, AMQP_REPLY_SUCCESS);
        amqp_destroy_connection(state);
        set_error(error, error_size, "%s", "out of memory");
        return NULL;
    }
    connection->state = state;
    connection->next_delivery_tag = 1;
    return connection;
}

static long long milliseconds_now(void) {
    struct timeval now;
    gettimeofday(&now, NULL);
    return (long long)now.tv_sec * 1000 + now.tv_usec / 1000;
}

at_amqp_status at_amqp_publish(at_amqp_connection *connection, const char *exchange, const char *routing_key,
                               const void *body, size_t body_size, const char *message_id,
                               const char *const *header_names, const char *const *header_values, size_t header_count,
                               int timeout_ms, char *error, size_t error_size) {
    amqp_table_entry_t *entries = calloc(header_count > 0 ? header_count : 1, sizeof *entries);
    if (entries == NULL) {
        set_error(error, error_size, "%s", "out of memory");
        return AT_AMQP_BROKEN;
    }
    for (size_t i = 0; i < header_count; i++) {
        entries[i].key = amqp_cstring_bytes(header_names[i]);
        entries[i].value.kind = AMQP_FIELD_KIND_UTF8;
        entries[i].value.value.bytes = amqp_cstring_bytes(header_values[i]);
    }

    amqp_basic_properties_t properties;
    memset(&properties, 0, sizeof properties);
    properties._flags = AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_DELIVERY_MODE_FLAG | AMQP_BASIC_MESSAGE_ID_FLAG |
                        AMQP_BASIC_HEADERS_FLAG;
    properties.content_type = amqp_cstring_bytes("application/json");
    properties.delivery_mode = 2;
    properties.message_id = amqp_cstring_bytes(message_id);
    properties.headers.num_entries = (int)header_count;
    properties.headers.entries = entries;

    amqp_bytes_t payload = {body_size, (void *)body};
    int status = amqp_basic_publish(connection->state, 1, amqp_cstring_bytes(exchange), amqp_cstring_bytes(routing_key),
                                    1, 0, &properties, payload);
    free(entries);
    if (status != AMQP_STATUS_OK) {
        set_error(error, error_size, "publish failed: %s", amqp_error_string2(status));
        return AT_AMQP_BROKEN;
    }
    uint64_t tag = connection->next_delivery_tag++;

    // Wait for this message's ack or nack. A basic.return (unroutable with the
    // mandatory flag) comes first, and the broker still acks the message after it.
    int returned = 0;
    char returned_text[200] = "";
    long long deadline = milliseconds_now() + timeout_ms;
    for (;;) {
        long long left = deadline - milliseconds_now();
        if (left <= 0) {
            set_error(error, error_size, "%s", "no publisher confirm arrived in time");
            return AT_AMQP_BROKEN;
        }
        struct timeval wait = timeout_of((int)left);
        amqp_frame_t frame;
        amqp_maybe_release_buffers(connection->state);
        status = amqp_simple_wait_frame_noblock(connection->state, &frame, &wait);
        if (status == AMQP_STATUS_TIMEOUT) {
            continue;
        }
        if (status != AMQP_STATUS_OK) {
            set_error(error, error_size, "waiting for the publisher confirm failed: %s", amqp_error_string2(status));
            return AT_AMQP_BROKEN;
        }
        if (frame.frame_type != AMQP_FRAME_METHOD) {
            continue;
        }
        switch (frame.payload.method.id) {
        case AMQP_BASIC_ACK_METHOD: {
            amqp_basic_ack_t *ack = (amqp_basic_ack_t *)frame.payload.method.decoded;
            if (ack->delivery_tag < tag && !ack->multiple) {
                continue;
            }
            if (returned) {
                set_error(error, error_size, "the broker returned the message as unroutable: %s", returned_text);
                return AT_AMQP_REJECTED;
            }
            return AT_AMQP_OK;
        }
        case AMQP_BASIC_NACK_METHOD:
            set_error(error, error_size, "%s", "the broker rejected the message (basic.nack)");
            return AT_AMQP_REJECTED;
        case AMQP_BASIC_RETURN_METHOD: {
            amqp_basic_return_t *ret = (amqp_basic_return_t *)frame.payload.method.decoded;
            snprintf(returned_text, sizeof returned_text, "%d %.*s", ret->reply_code, (int)ret->reply_text.len,
                     (char *)ret->reply_text.bytes);
            returned = 1;
            amqp_message_t message;
            amqp_rpc_reply_t reply = amqp_read_message(connection->state, frame.channel, &message, 0);
            if (reply.reply_type != AMQP_RESPONSE_NORMAL) {
                set_error(error, error_size, "reading a returned message failed: %s", reply_text(reply));
                return AT_AMQP_BROKEN;
            }
            amqp_destroy_message(&message);
            continue;
        }
        case AMQP_CHANNEL_CLOSE_METHOD: {
            amqp_channel_close_t *close = (amqp_channel_close_t *)frame.payload.method.decoded;
            char text[200];
            snprintf(text, sizeof text, "%d %.*s", close->reply_code, (int)close->reply_text.len,
                     (char *)close->reply_text.bytes);
            set_error(error, error_size, "the broker closed the channel: %s", text);
            return AT_AMQP_BROKEN;
        }
        case AMQP_CONNECTION_CLOSE_METHOD:
            set_error(error, error_size, "%s", "the broker closed the connection");
            return AT_AMQP_BROKEN;
        default:
            continue;
        }
    }
}

at_amqp_status at_amqp_declare_queue(at_amqp_connection *connection, const char *queue, char *error, size_t error_size) {
    amqp_queue_declare(connection->state, 1, amqp_cstring_bytes(queue), 0, 1, 0, 0, amqp_empty_table);
    amqp_rpc_reply_t reply = amqp_get_rpc_reply(connection->state);
    if (reply.reply_type != AMQP_RESPONSE_NORMAL) {
        set_error(error, error_size, "declaring the queue failed: %s", reply_text(reply));
        return AT_AMQP_BROKEN;
    }
    return AT_AMQP_OK;
}

at_amqp_status at_amqp_get(at_amqp_connection *connection, const char *queue, char **body, size_t *body_size,
                           char **headers, char *error, size_t error_size) {
    *body = NULL;
    *body_size = 0;
    *headers = NULL;
    amqp_rpc_reply_t reply = amqp_basic_get(connection->state, 1, amqp_cstring_bytes(queue), 1);
    if (reply.reply_type != AMQP_RESPONSE_NORMAL) {
        set_error(error, error_size, "basic.get failed: %s", reply_text(reply));
        return AT_AMQP_BROKEN;
    }
    if (reply.reply.id == AMQP_BASIC_GET_EMPTY_METHOD) {
        return AT_AMQP_OK;
    }
    amqp_message_t message;
    reply = amqp_read_message(connection->state, 1, &message, 0);
    if (reply.reply_type != AMQP_RESPONSE_NORMAL) {
        set_error(error, error_size, "reading the message failed: %s", reply_text(reply));
        return AT_AMQP_BROKEN;
    }
    *body = malloc(message.body.len + 1);
    size_t capacity = 4096;
    *headers = calloc(1, capacity);
    if (*body == NULL || *headers == NULL) {
        free(*body);
        free(*headers);
        amqp_destroy_message(&message);
        set_error(error, error_size, "%s", "out of memory");
        return AT_AMQP_BROKEN;
    }
    memcpy(*body, message.body.bytes, message.body.len);
    (*body)[message.body.len] = 0;
    *body_size = message.body.len;

    size_t used = 0;
    amqp_basic_properties_t *properties = &message.properties;
    if (properties->_flags & AMQP_BASIC_MESSAGE_ID_FLAG) {
        used += snprintf(*headers + used, capacity - used, "message_id=%.*s\n", (int)properties->message_id.len,
                         (char *)properties->message_id.bytes);
    }
    if (properties->_flags & AMQP_BASIC_DELIVERY_MODE_FLAG && used < capacity) {
        used += snprintf(*headers + used, capacity - used, "delivery_mode=%d\n", properties->delivery_mode);
    }
    if (properties->_flags & AMQP_BASIC_HEADERS_FLAG) {
        for (int i = 0; i < properties->headers.num_entries && used < capacity; i++) {
            amqp_table_entry_t *entry = &properties->headers.entries[i];
            if (entry->value.kind == AMQP_FIELD_KIND_UTF8 || entry->value.kind == AMQP_FIELD_KIND_BYTES) {
                used += snprintf(*headers + used, capacity - used, "%.*s=%.*s\n", (int)entry->key.len,
                                 (char *)entry->key.bytes, (int)entry->value.value.bytes.len,
                                 (char *)entry->value.value.bytes.bytes);
            }
        }
    }
    amqp_destroy_message(&message);
    return AT_AMQP_OK;
}

void at_amqp_free(void *pointer) {
    free(pointer);
}

void at_amqp_close(at_amqp_connection *connection) {
    if (connection == NULL) {
        return;
    }
    amqp_channel_close(connection->state, 1, AMQP_REPLY_SUCCESS);
    amqp_connection_close(connection->state, AMQP_REPLY_SUCCESS);
    amqp_destroy_connection(connection->state);
    free(connection);
}
