-- wrk script for bench/run: POSTs a webhook-sized JSON body, like the service sends.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"id": 1, "name": "bench customer 000001", "email": "customer000001@example.com"}'
