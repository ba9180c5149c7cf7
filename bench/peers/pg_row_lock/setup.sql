-- The "DB lock" peer's schema: one sale row whose stock never runs out during a run, so every
-- purchase contends on the same row, and an order table that starts empty.
DROP TABLE IF EXISTS peer_sale_order;
DROP TABLE IF EXISTS peer_time_sale;
CREATE TABLE peer_time_sale (id int PRIMARY KEY, remaining bigint NOT NULL CHECK (remaining >= 0));
CREATE TABLE peer_sale_order (
    id bigserial PRIMARY KEY,
    sale_id int NOT NULL REFERENCES peer_time_sale (id),
    user_id bigint NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO peer_time_sale VALUES (1, 100000000);
