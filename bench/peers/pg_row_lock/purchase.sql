-- One purchase, run by pgbench as one transaction: take a unit from the hot row (its row lock
-- serialises every buyer) only while stock is left, and write the order in the same commit.
\set user_id random(1, 1000000)
WITH taken AS (
    UPDATE peer_time_sale SET remaining = remaining - 1 WHERE id = 1 AND remaining > 0 RETURNING id
)
INSERT INTO peer_sale_order (sale_id, user_id) SELECT id, :user_id FROM taken;
