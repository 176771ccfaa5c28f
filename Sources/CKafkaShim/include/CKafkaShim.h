#ifndef CKAFKA_SHIM_H
#define CKAFKA_SHIM_H

#include <stddef.h>
#include <stdint.h>

typedef struct at_kafka_producer at_kafka_producer;
typedef struct at_kafka_consumer at_kafka_consumer;
typedef struct at_kafka_mock_cluster at_kafka_mock_cluster;

typedef enum {
    AT_KAFKA_OK = 0,
    /// The message was not delivered (timeout, broker error); a later attempt may succeed.
    AT_KAFKA_FAILED = 1,
    /// The message is larger than the producer or broker accepts; retrying cannot help.
    AT_KAFKA_TOO_LARGE = 2,
    /// The producer hit a fatal error (for example of the idempotent producer); create a new one.
    AT_KAFKA_BROKEN = 3,
} at_kafka_status;

/// Creates an idempotent producer (acks=all) from librdkafka configuration properties.
/// `message_timeout_ms` bounds each message from produce to its delivery report.
at_kafka_producer *at_kafka_producer_new(const char *const *names, const char *const *values, size_t count,
                                         int message_timeout_ms, char *error, size_t error_size);

/// Produces one message and waits for its delivery report.
at_kafka_status at_kafka_produce(at_kafka_producer *producer, const char *topic, const void *key, size_t key_size,
                                 const void *value, size_t value_size, const char *const *header_names,
                                 const char *const *header_values, size_t header_count, char *error, size_t error_size);

void at_kafka_producer_destroy(at_kafka_producer *producer);

/// Checks librdkafka producer properties without connecting: returns 0, or -1 with
/// the first problem in `error`.
int at_kafka_check_configuration(const char *const *names, const char *const *values, size_t count, char *error,
                                 size_t error_size);

/// Starts an in-process mock Kafka cluster (librdkafka's) on loopback, for tests.
at_kafka_mock_cluster *at_kafka_mock_cluster_new(int brokers, char *error, size_t error_size);
/// The bootstrap servers of a mock cluster, "host:port,...".
const char *at_kafka_mock_cluster_bootstraps(at_kafka_mock_cluster *cluster);
/// Creates a topic on the mock cluster.
int at_kafka_mock_topic_create(at_kafka_mock_cluster *cluster, const char *topic, int partitions);
/// Takes a mock broker down (up = 0) or brings it back (up = 1).
int at_kafka_mock_broker_set_up(at_kafka_mock_cluster *cluster, int32_t broker_id, int up);
void at_kafka_mock_cluster_destroy(at_kafka_mock_cluster *cluster);

/// Creates a consumer that reads partitions 0..partitions-1 of a topic from the beginning.
at_kafka_consumer *at_kafka_consumer_new(const char *bootstrap, const char *topic, int partitions, char *error,
                                         size_t error_size);
/// Waits up to timeout_ms for the next message. Returns 1 with the outputs set (free each with
/// at_kafka_free), 0 when none arrived, -1 on error. `headers` contains "name=value" lines.
int at_kafka_consume(at_kafka_consumer *consumer, int timeout_ms, char **key, size_t *key_size, char **value,
                     size_t *value_size, int32_t *partition, char **headers, char *error, size_t error_size);
void at_kafka_consumer_destroy(at_kafka_consumer *consumer);

void at_kafka_free(void *pointer);

#endif
