#ifndef ACTION_TRIGGERS_CCURLSHIM_H
#define ACTION_TRIGGERS_CCURLSHIM_H

#include <curl/curl.h>

// Swift cannot call C variadic functions, so each libcurl setter that the
// service uses gets one wrapper per argument type.

typedef size_t (*at_curl_data_callback)(char *data, size_t size, size_t count, void *user_data);

CURLcode at_curl_easy_setopt_long(CURL *handle, CURLoption option, long value);
CURLcode at_curl_easy_setopt_string(CURL *handle, CURLoption option, const char *value);
CURLcode at_curl_easy_setopt_pointer(CURL *handle, CURLoption option, void *value);
CURLcode at_curl_easy_setopt_off_t(CURL *handle, CURLoption option, curl_off_t value);
CURLcode at_curl_easy_setopt_callback(CURL *handle, CURLoption option, at_curl_data_callback value);

CURLcode at_curl_easy_getinfo_long(CURL *handle, CURLINFO info, long *value);
CURLcode at_curl_easy_getinfo_pointer(CURL *handle, CURLINFO info, void **value);
CURLcode at_curl_easy_getinfo_double(CURL *handle, CURLINFO info, double *value);

CURLMcode at_curl_multi_setopt_long(CURLM *handle, CURLMoption option, long value);

// The fields of a finished transfer's message, read out of CURLMsg's union.
int at_curl_multi_message_is_done(const CURLMsg *message);
CURLcode at_curl_multi_message_result(const CURLMsg *message);

#endif
