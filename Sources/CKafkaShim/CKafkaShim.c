// A small C layer over librdkafka: its produce call takes a union array, delivery
// reports arrive in a callback, and tests need the mock cluster and a consumer.
#include "CKafkaShim.h"

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct at_kafka_producer {
    rd_kafka_t *handle;
    int message_timeout_ms;
};

struct at_kafka_consumer {
    rd_kafka_t *handle;
};

struct at_kafka_mock_cluster {
    rd_kafka_t *handle;
    rd_kafka_mock_cluster_t *cluster;
};

/// The delivery report of one message, written by the callback.
struct delivery_report {
    int done;
    rd_kafka_resp_err_t error;
};

static void set_error(char *error, size_t size, const char *format, const char *detail) {
    if (error != NULL && size > 0) {
        snprintf(error, size, format, detail);
    }
}

static void on_delivery(rd_kafka_t *handle, const rd_kafka_message_t *message, void *opaque) {
    (void)handle;
    (void)opaque;
    struct delivery_report *report = message->_private;
    if (report != NULL) {
        report->error = message->err;
        report->done = 1;
    }
}

/// Writes librdkafka's log lines in the service's logfmt shape on stderr.
static void on_log(const rd_kafka_t *handle, int level, const char *facility, const char *message) {
    (void)handle;
    // syslog levels: 0-3 are errors, 4 a warning, 5-6 notice and info, 7 debug.
    const char *name = "debug";
    if (level <= 3) {
        name = "error";
    } else if (level == 4) {
        name = "warning";
    } else if (level <= 6) {
        name = "info";
    }
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    struct tm parts;
    gmtime_r(&now.tv_sec, &parts);
    char stamp[32];
    strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &parts);
    char line[1200];
    size_t used = (size_t)snprintf(line, sizeof line, "time=%s.%03ldZ level=%s component=kafka msg=\"", stamp,
                                   now.tv_nsec / 1000000, name);
    for (const char *c = message; *c != 0 && used < sizeof line - 64; c++) {
        if (*c == '"' || *c == '\\') {
            line[used++] = '\\';
            line[used++] = *c;
        } else if ((unsigned char)*c < 0x20) {
            line[used++] = ' ';
        } else {
            line[used++] = *c;
        }
    }
    snprintf(line + used, sizeof line - used, "\" kafka.facility=%s\n", facility);
    fputs(line, stderr);
}

int at_kafka_check_configuration(const char *const *names, const char *const *values, size_t count, char *error,
                                 size_t error_size) {
    char text[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    for (size_t i = 0; i < count; i++) {
        if (rd_kafka_conf_set(conf, names[i], values[i], text, sizeof text) != RD_KAFKA_CONF_OK) {
            set_error(error, error_size, "%s", text);
            rd_kafka_conf_destroy(conf);
            return -1;
        }
    }
    rd_kafka_conf_destroy(conf);
    return 0;
}

at_kafka_producer *at_kafka_producer_new(const char *const *names, const char *const *values, size_t count,
                                         int message_timeout_ms, char *error, size_t error_size) {
    char text[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char timeout[32];
    snprintf(timeout, sizeof timeout, "%d", message_timeout_ms);
    const char *defaults[][2] = {
        {"enable.idempotence", "true"}, {"acks", "all"}, {"linger.ms", "0"}, {"message.timeout.ms", timeout},
    };
    for (size_t i = 0; i < sizeof defaults / sizeof defaults[0]; i++) {
        if (rd_kafka_conf_set(conf, defaults[i][0], defaults[i][1], text, sizeof text) != RD_KAFKA_CONF_OK) {
            set_error(error, error_size, "%s", text);
            rd_kafka_conf_destroy(conf);
            return NULL;
        }
    }
    for (size_t i = 0; i < count; i++) {
        if (rd_kafka_conf_set(conf, names[i], values[i], text, sizeof text) != RD_KAFKA_CONF_OK) {
            set_error(error, error_size, "%s", text);
            rd_kafka_conf_destroy(conf);
            return NULL;
        }
    }
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rd_kafka_conf_set_log_cb(conf, on_log);
    rd_kafka_t *handle = rd_kafka_new(RD_KAFKA_PRODUCER, conf, text, sizeof text);
    if (handle == NULL) {
        set_error(error, error_size, "%s", text);
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    at_kafka_producer *producer = calloc(1, sizeof *producer);
    if (producer == NULL) {
        rd_kafka_destroy(handle);
        set_error(error, error_size, "%s", "out of memory");
        return NULL;
    }
    producer->handle = handle;
    producer->message_timeout_ms = message_timeout_ms;
    return producer;
}

static at_kafka_status status_of(rd_kafka_resp_err_t error) {
    switch (error) {
    case RD_KAFKA_RESP_ERR_NO_ERROR:
        return AT_KAFKA_OK;
    case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE:
        return AT_KAFKA_TOO_LARGE;
    case RD_KAFKA_RESP_ERR__FATAL:
        return AT_KAFKA_BROKEN;
    default:
        return AT_KAFKA_FAILED;
    }
}

at_kafka_status at_kafka_produce(at_kafka_producer *producer, const char *topic, const void *key, size_t key_size,
                                 const void *value, size_t value_size, const char *const *header_names,
                                 const char *const *header_values, size_t header_count, char *error, size_t error_size) {
    struct delivery_report *report = calloc(1, sizeof *report);
    rd_kafka_headers_t *headers = rd_kafka_headers_new(header_count);
    if (report == NULL || headers == NULL) {
        free(report);
        if (headers != NULL) {
            rd_kafka_headers_destroy(headers);
        }
        set_error(error, error_size, "%s", "out of memory");
        return AT_KAFKA_FAILED;
    }
    for (size_t i = 0; i < header_count; i++) {
        rd_kafka_header_add(headers, header_names[i], -1, header_values[i], -1);
    }

    rd_kafka_vu_t parts[6];
    memset(parts, 0, sizeof parts);
    parts[0].vtype = RD_KAFKA_VTYPE_TOPIC;
    parts[0].u.cstr = topic;
    parts[1].vtype = RD_KAFKA_VTYPE_KEY;
    parts[1].u.mem.ptr = (void *)key;
    parts[1].u.mem.size = key_size;
    parts[2].vtype = RD_KAFKA_VTYPE_VALUE;
    parts[2].u.mem.ptr = (void *)value;
    parts[2].u.mem.size = value_size;
    parts[3].vtype = RD_KAFKA_VTYPE_MSGFLAGS;
    parts[3].u.i = RD_KAFKA_MSG_F_COPY;
    parts[4].vtype = RD_KAFKA_VTYPE_OPAQUE;
    parts[4].u.ptr = report;
    parts[5].vtype = RD_KAFKA_VTYPE_HEADERS;
    parts[5].u.headers = headers;

    rd_kafka_error_t *produce_error = rd_kafka_produceva(producer->handle, parts, 6);
    if (produce_error != NULL) {
        rd_kafka_resp_err_t code = rd_kafka_error_code(produce_error);
        set_error(error, error_size, "%s", rd_kafka_error_string(produce_error));
        rd_kafka_error_destroy(produce_error);
        rd_kafka_headers_destroy(headers);
        free(report);
        return status_of(code);
    }

    // message.timeout.ms guarantees a delivery report, an error one at the latest,
    // so this loop ends; the slack covers the report's own way back.
    int waited = 0;
    while (!report->done && waited < producer->message_timeout_ms + 5000) {
        rd_kafka_poll(producer->handle, 50);
        waited += 50;
    }
    if (!report->done) {
        // The report may still come later and would write into `report`, so it is kept.
        set_error(error, error_size, "%s", "no delivery report arrived");
        return AT_KAFKA_BROKEN;
    }
    rd_kafka_resp_err_t code = report->error;
    free(report);
    if (code != RD_KAFKA_RESP_ERR_NO_ERROR) {
        char reason[256];
        rd_kafka_resp_err_t fatal = rd_kafka_fatal_error(producer->handle, reason, sizeof reason);
        if (fatal != RD_KAFKA_RESP_ERR_NO_ERROR) {
            set_error(error, error_size, "the producer failed: %s", reason);
            return AT_KAFKA_BROKEN;
        }
        set_error(error, error_size, "%s", rd_kafka_err2str(code));
        return status_of(code);
    }
    return AT_KAFKA_OK;
}

void at_kafka_producer_destroy(at_kafka_producer *producer) {
    if (producer == NULL) {
        return;
    }
    rd_kafka_flush(producer->handle, 1000);
    rd_kafka_destroy(producer->handle);
    free(producer);
}

at_kafka_mock_cluster *at_kafka_mock_cluster_new(int brokers, char *error, size_t error_size) {
    char text[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_t *handle = rd_kafka_new(RD_KAFKA_PRODUCER, conf, text, sizeof text);
    if (handle == NULL) {
        set_error(error, error_size, "%s", text);
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rd_kafka_mock_cluster_t *cluster = rd_kafka_mock_cluster_new(handle, brokers);
    if (cluster == NULL) {
        set_error(error, error_size, "%s", "the mock cluster could not be created");
        rd_kafka_destroy(handle);
        return NULL;
    }
    at_kafka_mock_cluster *mock = calloc(1, sizeof *mock);
    mock->handle = handle;
    mock->cluster = cluster;
    return mock;
}

const char *at_kafka_mock_cluster_bootstraps(at_kafka_mock_cluster *cluster) {
    return rd_kafka_mock_cluster_bootstraps(cluster->cluster);
}

int at_kafka_mock_topic_create(at_kafka_mock_cluster *cluster, const char *topic, int partitions) {
    return rd_kafka_mock_topic_create(cluster->cluster, topic, partitions, 1) == RD_KAFKA_RESP_ERR_NO_ERROR ? 0 : -1;
}

int at_kafka_mock_broker_set_up(at_kafka_mock_cluster *cluster, int32_t broker_id, int up) {
    rd_kafka_resp_err_t code = up ? rd_kafka_mock_broker_set_up(cluster->cluster, broker_id)
                                  : rd_kafka_mock_broker_set_down(cluster->cluster, broker_id);
    return code == RD_KAFKA_RESP_ERR_NO_ERROR ? 0 : -1;
}

void at_kafka_mock_cluster_destroy(at_kafka_mock_cluster *cluster) {
    if (cluster == NULL) {
        return;
    }
    rd_kafka_mock_cluster_destroy(cluster->cluster);
    rd_kafka_destroy(cluster->handle);
    free(cluster);
}

at_kafka_consumer *at_kafka_consumer_new(const char *bootstrap, const char *topic, int partitions, char *error,
                                         size_t error_size) {
    char text[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap, text, sizeof text) != RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "group.id", "action-triggers-tests", text, sizeof text) != RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "enable.auto.commit", "false", text, sizeof text) != RD_KAFKA_CONF_OK) {
        set_error(error, error_size, "%s", text);
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rd_kafka_t *handle = rd_kafka_new(RD_KAFKA_CONSUMER, conf, text, sizeof text);
    if (handle == NULL) {
        set_error(error, error_size, "%s", text);
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rd_kafka_poll_set_consumer(handle);
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(partitions);
    for (int i = 0; i < partitions; i++) {
        rd_kafka_topic_partition_list_add(list, topic, i)->offset = RD_KAFKA_OFFSET_BEGINNING;
    }
    rd_kafka_resp_err_t code = rd_kafka_assign(handle, list);
    rd_kafka_topic_partition_list_destroy(list);
    if (code != RD_KAFKA_RESP_ERR_NO_ERROR) {
        set_error(error, error_size, "%s", rd_kafka_err2str(code));
        rd_kafka_destroy(handle);
        return NULL;
    }
    at_kafka_consumer *consumer = calloc(1, sizeof *consumer);
    consumer->handle = handle;
    return consumer;
}

static char *copy_bytes(const void *bytes, size_t size) {
    char *copy = malloc(size + 1);
    if (copy != NULL) {
        if (size > 0) {
            memcpy(copy, bytes, size);
        }
        copy[size] = 0;
    }
    return copy;
}

int at_kafka_consume(at_kafka_consumer *consumer, int timeout_ms, char **key, size_t *key_size, char **value,
                     size_t *value_size, int32_t *partition, char **headers, char *error, size_t error_size) {
    rd_kafka_message_t *message = rd_kafka_consumer_poll(consumer->handle, timeout_ms);
    if (message == NULL) {
        return 0;
    }
    if (message->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
        rd_kafka_message_destroy(message);
        return 0;
    }
    if (message->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        set_error(error, error_size, "%s", rd_kafka_message_errstr(message));
        rd_kafka_message_destroy(message);
        return -1;
    }
    *key = copy_bytes(message->key, message->key_len);
    *key_size = message->key_len;
    *value = copy_bytes(message->payload, message->len);
    *value_size = message->len;
    *partition = message->partition;

    size_t capacity = 4096, used = 0;
    *headers = calloc(1, capacity);
    rd_kafka_headers_t *list = NULL;
    if (*headers != NULL && rd_kafka_message_headers(message, &list) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        const char *name;
        const void *header_value;
        size_t size;
        for (size_t i = 0; rd_kafka_header_get_all(list, i, &name, &header_value, &size) == RD_KAFKA_RESP_ERR_NO_ERROR &&
                           used < capacity;
             i++) {
            used += snprintf(*headers + used, capacity - used, "%s=%.*s\n", name, (int)size, (const char *)header_value);
        }
    }
    rd_kafka_message_destroy(message);
    return 1;
}

void at_kafka_consumer_destroy(at_kafka_consumer *consumer) {
    if (consumer == NULL) {
        return;
    }
    rd_kafka_consumer_close(consumer->handle);
    rd_kafka_destroy(consumer->handle);
    free(consumer);
}

void at_kafka_free(void *pointer) {
    free(pointer);
}
