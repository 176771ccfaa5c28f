-- Row changes that each of the three example configs reacts to. Run it after
-- create_configs.py, for example:
--
--   docker compose exec -T postgres psql -U app -d app -v ON_ERROR_STOP=1 < examples/django/rows.sql

-- Example 1: two saves of Ada, a save and a delete of Bea.
INSERT INTO myapp_customer (name, email) VALUES ('Ada O''Brien', 'ada@example.com');
INSERT INTO myapp_customer (name, email) VALUES ('Bea', 'bea@example.com');
UPDATE myapp_customer SET email = 'ada.obrien@example.com' WHERE email = 'ada@example.com';
DELETE FROM myapp_customer WHERE email = 'bea@example.com';

-- Example 2: a product and a sale. Example 3: the same sale.
INSERT INTO myapp_product (name, description) VALUES ('Desk lamp', 'Brass, 40 cm "tall"');
INSERT INTO myapp_sale (customer_id, product_id, quantity)
SELECT customer.id, product.id, 2
FROM myapp_customer AS customer, myapp_product AS product
WHERE customer.email = 'ada.obrien@example.com' AND product.name = 'Desk lamp';
