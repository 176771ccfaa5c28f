/*
 * Sends webhooks for the bounds of bench/suite: reads one JSON body per line on
 * standard input and POSTs each to the URL given as the only argument.
 *
 * It stands for the leanest webhook sender: libcurl's multi interface, as the
 * service uses it, with up to 64 transfers at once (the service's default
 * delivery_concurrency) on reused connections, and nothing else per request. At
 * the end of its input it waits for the transfers in flight and prints "sent N,
 * failed M" on standard error. It exits with status 1 when a request failed or
 * got a status other than 2xx, and with 2 on a usage or set-up error.
 *
 * Build: clang -O2 -o webhook-poster webhook_poster.c -lcurl
 */
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { SLOTS = 64, MAX_LINE = 1 << 20 };

struct slot {
    CURL *easy;
    char *body;
};

struct line_queue {
    char **lines;
    size_t head, count, capacity;
};

static struct slot slots[SLOTS];
static int free_slots[SLOTS];
static int free_count;

static size_t discard_body(char *data, size_t size, size_t count, void *context) {
    (void)data;
    (void)context;
    return size * count;
}

static void queue_push(struct line_queue *queue, char *line) {
    if (queue->count == queue->capacity) {
        size_t capacity = queue->capacity ? queue->capacity * 2 : 1024;
        char **lines = malloc(capacity * sizeof *lines);
        if (lines == NULL) {
            fprintf(stderr, "webhook-poster: out of memory\n");
            exit(2);
        }
        for (size_t i = 0; i < queue->count; i++) {
            lines[i] = queue->lines[(queue->head + i) % queue->capacity];
        }
        free(queue->lines);
        queue->lines = lines;
        queue->head = 0;
        queue->capacity = capacity;
    }
    queue->lines[(queue->head + queue->count) % queue->capacity] = line;
    queue->count++;
}

static char *queue_pop(struct line_queue *queue) {
    char *line = queue->lines[queue->head];
    queue->head = (queue->head + 1) % queue->capacity;
    queue->count--;
    return line;
}

/* Moves every complete line of `buffer` to `queue` and returns the bytes left. */
static size_t split_lines(char *buffer, size_t used, struct line_queue *queue) {
    char *start = buffer;
    char *end = buffer + used;
    char *newline;
    while ((newline = memchr(start, '\n', (size_t)(end - start))) != NULL) {
        *newline = '\0';
        if (newline > start) {
            char *line = strdup(start);
            if (line == NULL) {
                fprintf(stderr, "webhook-poster: out of memory\n");
                exit(2);
            }
            queue_push(queue, line);
        }
        start = newline + 1;
    }
    size_t left = (size_t)(end - start);
    memmove(buffer, start, left);
    return left;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: webhook-poster URL < bodies\n");
        return 2;
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "webhook-poster: curl_global_init failed\n");
        return 2;
    }
    CURLM *multi = curl_multi_init();
    struct curl_slist *headers = curl_slist_append(NULL, "Content-Type: application/json");
    if (multi == NULL || headers == NULL) {
        fprintf(stderr, "webhook-poster: libcurl set-up failed\n");
        return 2;
    }
    curl_multi_setopt(multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)SLOTS);
    // By default libcurl's connection cache keeps four connections per transfer added,
    // so it closed connections whenever few transfers ran, and the receiver accepted
    // about 170 new ones a second under pgbench. The service keeps its connections.
    curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, (long)SLOTS);
    for (int i = 0; i < SLOTS; i++) {
        CURL *easy = curl_easy_init();
        if (easy == NULL) {
            fprintf(stderr, "webhook-poster: curl_easy_init failed\n");
            return 2;
        }
        curl_easy_setopt(easy, CURLOPT_URL, argv[1]);
        curl_easy_setopt(easy, CURLOPT_HTTPHEADER, headers);
        curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, discard_body);
        curl_easy_setopt(easy, CURLOPT_TIMEOUT, 30L);
        curl_easy_setopt(easy, CURLOPT_PRIVATE, (void *)&slots[i]);
        slots[i].easy = easy;
        free_slots[free_count++] = i;
    }
    if (fcntl(STDIN_FILENO, F_SETFL, O_NONBLOCK) != 0) {
        fprintf(stderr, "webhook-poster: fcntl failed: %s\n", strerror(errno));
        return 2;
    }

    static char buffer[MAX_LINE];
    size_t used = 0;
    int input_open = 1;
    long sent = 0, failed = 0;
    struct line_queue queue = {0};
    int running = 0;

    while (input_open || queue.count > 0 || free_count < SLOTS) {
        while (queue.count > 0 && free_count > 0) {
            struct slot *slot = &slots[free_slots[--free_count]];
            slot->body = queue_pop(&queue);
            curl_easy_setopt(slot->easy, CURLOPT_POSTFIELDS, slot->body);
            curl_multi_add_handle(multi, slot->easy);
        }

        struct curl_waitfd input = {STDIN_FILENO, CURL_WAIT_POLLIN, 0};
        curl_multi_poll(multi, input_open ? &input : NULL, input_open ? 1 : 0, 100, NULL);
        curl_multi_perform(multi, &running);

        CURLMsg *message;
        int left;
        while ((message = curl_multi_info_read(multi, &left)) != NULL) {
            if (message->msg != CURLMSG_DONE) {
                continue;
            }
            struct slot *slot;
            long status = 0;
            curl_easy_getinfo(message->easy_handle, CURLINFO_PRIVATE, (char **)&slot);
            curl_easy_getinfo(message->easy_handle, CURLINFO_RESPONSE_CODE, &status);
            if (message->data.result == CURLE_OK && status >= 200 && status < 300) {
                sent++;
            } else {
                failed++;
            }
            curl_multi_remove_handle(multi, slot->easy);
            free(slot->body);
            slot->body = NULL;
            free_slots[free_count++] = (int)(slot - slots);
        }

        if (input_open) {
            ssize_t count = read(STDIN_FILENO, buffer + used, sizeof buffer - used);
            if (count > 0) {
                used = split_lines(buffer, used + (size_t)count, &queue);
                if (used == sizeof buffer) {
                    fprintf(stderr, "webhook-poster: a body is longer than %d bytes\n", MAX_LINE);
                    return 2;
                }
            } else if (count == 0) {
                input_open = 0;
            } else if (errno != EAGAIN && errno != EINTR) {
                fprintf(stderr, "webhook-poster: reading standard input failed: %s\n", strerror(errno));
                return 2;
            }
        }
    }

    fprintf(stderr, "sent %ld, failed %ld\n", sent, failed);
    return failed > 0 ? 1 : 0;
}
