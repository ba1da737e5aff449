-- Run as the app's role on its own database before the app starts (setup_sql = "@...").
CREATE TABLE customers (id int PRIMARY KEY, name text NOT NULL);
INSERT INTO customers SELECT i, 'customer ' || i FROM generate_series(1, 100) AS i;
CREATE TABLE orders (
    id bigserial PRIMARY KEY,
    customer_id int NOT NULL REFERENCES customers (id),
    ref uuid NOT NULL UNIQUE,
    qty int NOT NULL CHECK (qty > 0),
    created timestamptz NOT NULL DEFAULT now()
);
