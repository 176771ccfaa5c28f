#ifndef CRABBITMQ_SHIM_H
#define CRABBITMQ_SHIM_H

#include <stddef.h>
#include <stdint.h>

/// An open AMQP connection with channel 1 in publisher-confirm mode.
typedef struct at_amqp_connection at_amqp_connection;

/// The outcome of a call; `message` explains any failure.
typedef enum {
    AT_AMQP_OK = 0,
    /// The broker did not take the message (nack, unroutable, channel error); the connection is still usable.
    AT_AMQP_REJECTED = 1,
    /// The connection failed or timed out; close it and connect again.
    AT_AMQP_BROKEN = 2,
} at_amqp_status;

/// Connects, logs in with PLAIN credentials, opens channel 1 and enables publisher confirms.
/// Returns NULL and fills `error` on failure.
at_amqp_connection *at_amqp_connect(const char *host, int port, const char *vhost, const char *username,
                                    const char *password, int timeout_ms, char *error, size_t error_size);

/// Publishes one persistent message with the mandatory flag and waits for the broker's confirm.
/// `header_names` and `header_values` (count `header_count`) become AMQP headers.
at_amqp_status at_amqp_publish(at_amqp_connection *connection, const char *exchange, const char *routing_key,
                               const void *body, size_t body_size, const char *message_id,
                               const char *const *header_names, const char *const *header_values, size_t header_count,
                               int timeout_ms, char *error, size_t error_size);

/// Declares a durable queue, for tests and set-up.
at_amqp_status at_amqp_declare_queue(at_amqp_connection *connection, const char *queue, char *error, size_t error_size);

/// Takes one message from a queue with basic.get. Returns AT_AMQP_OK with `*body` set (free it with
/// at_amqp_free) or with `*body` NULL when the queue is empty. `*headers` receives the message id and
/// the string headers as "name=value" lines.
at_amqp_status at_amqp_get(at_amqp_connection *connection, const char *queue, char **body, size_t *body_size,
                           char **headers, char *error, size_t error_size);

void at_amqp_free(void *pointer);

/// Closes the channel and the connection and frees it.
void at_amqp_close(at_amqp_connection *connection);

#endif
