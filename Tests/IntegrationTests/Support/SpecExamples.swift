/// The three example bodies of the ancestor's REST API documentation, with its
/// URLs, headers and broker names. Examples 2 and 3 are printed there without the
/// comma after `content_types`; `asPrinted` keeps that mistake and `body` adds it.
enum SpecExample: CaseIterable {
    case one, two, three

    var body: String {
        asPrinted.replacingOccurrences(of: "  ]\n  \"webhooks\"", with: "  ],\n  \"webhooks\"")
    }

    /// The line and column where a strict parser meets `"webhooks"` without the comma.
    var missingCommaPosition: (line: Int, column: Int)? {
        switch self {
        case .one: nil
        case .two: (15, 3)
        case .three: (11, 3)
        }
    }

    var asPrinted: String {
        switch self {
        case .one:
            """
            {
              "config_signals": [
                {"signal": "post_save"},
                {"signal": "post_delete"}
              ],
              "content_types": [
                {
                  "app_label": "myapp",
                  "model_name": "Customer"
                }
              ],
              "webhooks": [
                {
                  "url": "https://my-webhook.com",
                  "http_method": "POST",
                  "headers": {
                    "Authorization": "Bearer {{ myapp.utils.get_token }}"
                  },
                  "timeout_secs": 10.0
                }
              ],
              "active": true
            }
            """
        case .two:
            """
            {
              "config_signals": [
                {"signal": "post_save"}
              ],
              "content_types": [
                {
                  "app_label": "myapp",
                  "model_name": "Product"
                },
                {
                  "app_label": "myapp",
                  "model_name": "Sale"
                }
              ]
              "webhooks": [
                {
                  "url": "https://my-webhook.com",
                  "http_method": "POST",
                  "headers": {
                    "Authorization": "Bearer {{ myapp.utils.get_token }}"
                  },
                  "timeout_secs": 2.25
                },
                {
                  "url": "https://my-other-webhook.com",
                  "http_method": "POST",
                  "headers": {
                    "Authorization": "Bearer {{ myapp.utils.get_token }}"
                  }
                }
              ],
              "msg_broker_queues": [
                {
                  "name": "my-msg-broker-config",
                  "parameters": {
                    "product_id": "{{ myapp.utils.get_product_id }}"
                  },
                  "timeout_secs": 5.75
                },
                {
                  "name": "my-other-msg-broker-config",
                  "parameters": {
                    "sale_id": "{{ myapp.utils.get_sale_id }}"
                  }
                }
              ],
              "active": true
            }
            """
        case .three:
            """
            {
              "config_signals": [
                {"signal": "post_save"}
              ],
              "content_types": [
                {
                  "app_label": "myapp",
                  "model_name": "Sale"
                }
              ]
              "webhooks": [
                {
                  "url": "https://my-webhook.com",
                  "http_method": "POST",
                  "headers": {
                    "Authorization": "Bearer {{ myapp.utils.get_token }}"
                  },
                  "timeout_secs": 12.25
                }
              ],
              "active": true,
              "payload": {
                "action": "new_sale",
                "customer_name": "{{ instance.customer.name }}",
                "product_name": "{{ instance.product.name }}"
              }
            }
            """
        }
    }

    /// Settings under which all three examples are valid: the spec's hosts allowed,
    /// its dynamic values from environment variables, and its two brokers as Redis
    /// streams on the given port.
    static func settings(redisPort: Int) -> String {
        """
        {
          "whitelisted_webhook_endpoint_patterns": ["https://my-webhook\\\\.com$", "https://my-other-webhook\\\\.com$"],
          "dynamic_values": {
            "myapp.utils.get_token": {"env": "MYAPP_TOKEN"},
            "myapp.utils.get_product_id": {"env": "MYAPP_PRODUCT_ID"},
            "myapp.utils.get_sale_id": {"env": "MYAPP_SALE_ID"}
          },
          "brokers": {
            "my-msg-broker-config": {
              "broker_type": "redis", "conn_details": {"host": "127.0.0.1", "port": \(redisPort)},
              "params": {"stream": "products"}
            },
            "my-other-msg-broker-config": {
              "broker_type": "redis", "conn_details": {"host": "127.0.0.1", "port": \(redisPort)},
              "params": {"stream": "sales"}
            }
          }
        }
        """
    }
}
